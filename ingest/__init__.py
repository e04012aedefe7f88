"""Binance spot market data -> Avro -> Kafka connector."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("binance-ingest")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+source"
