"""The naive pipeline, written the way the client library's Avro producer example is written.

For the ratio "our worker vs the obvious code": ``json.loads`` per frame, a dict per ticker, the
``AvroSerializer`` called per message, ``produce`` per message with a delivery callback, ``poll(0)``
per message and ``flush()`` per frame; default producer settings apart from the bootstrap servers. It
reconnects when the simulator closes it as a slow consumer. Run by bench/end_to_end.py as a child process:
``python -m bench.naive WS_URL BOOTSTRAP REGISTRY PREFIX``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import websockets
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext, StringSerializer

from ingest.avro import load_schema


def mini_to_dict(t: dict, stream: str) -> dict:
    return {"event_type": t["e"], "event_time": t["E"], "symbol": t["s"], "close_price": t["c"],
            "open_price": t["o"], "high_price": t["h"], "low_price": t["l"], "base_volume": t["v"],
            "quote_volume": t["q"], "ingest_time": int(time.time() * 1e6), "source": "websocket",
            "stream": stream, "connection_id": None}


def ticker_to_dict(t: dict, stream: str) -> dict:
    return {"event_type": t["e"], "event_time": t["E"], "symbol": t["s"], "price_change": t["p"],
            "price_change_percent": t["P"], "weighted_avg_price": t["w"], "first_trade_price": t["x"],
            "close_price": t["c"], "last_quantity": t["Q"], "best_bid_price": t["b"], "best_bid_qty": t["B"],
            "best_ask_price": t["a"], "best_ask_qty": t["A"], "open_price": t["o"], "high_price": t["h"],
            "low_price": t["l"], "base_volume": t["v"], "quote_volume": t["q"], "stats_open_time": t["O"],
            "stats_close_time": t["C"], "first_trade_id": t["F"], "last_trade_id": t["L"], "trade_count": t["n"],
            "ingest_time": int(time.time() * 1e6), "source": "websocket", "stream": stream, "connection_id": None}


def delivery_report(err, msg) -> None:  # the example's callback, minus the print per message
    if err is not None:
        print(f"Delivery failed for record {msg.key()}: {err}", file=sys.stderr)


async def main(ws_url: str, bootstrap: str, registry: str, prefix: str) -> None:
    client = SchemaRegistryClient({"url": registry})
    serializers = {
        "24hrMiniTicker": (f"{prefix}.miniticker", AvroSerializer(client, json.dumps(load_schema("miniticker"))),
                           mini_to_dict),
        "24hrTicker": (f"{prefix}.ticker", AvroSerializer(client, json.dumps(load_schema("ticker"))),
                       ticker_to_dict),
    }
    string_serializer = StringSerializer("utf_8")
    producer = Producer({"bootstrap.servers": bootstrap})
    url = ws_url + "/stream?streams=!miniTicker@arr/!ticker@arr"
    while True:
        try:
            async with websockets.connect(url, max_size=None) as ws:
                async for message in ws:
                    frame = json.loads(message)
                    stream = frame["stream"]
                    for ticker in frame["data"]:
                        topic, serializer, to_dict = serializers[ticker["e"]]
                        producer.produce(topic=topic, key=string_serializer(ticker["s"]),
                                         value=serializer(to_dict(ticker, stream),
                                                          SerializationContext(topic, MessageField.VALUE)),
                                         timestamp=ticker["E"], on_delivery=delivery_report)
                        producer.poll(0)
                    producer.flush()
        except websockets.ConnectionClosed:
            continue


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
