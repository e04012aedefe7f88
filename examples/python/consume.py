"""Consume the connector's ticker topic with confluent-kafka's own Avro deserializer.

The connector writes Confluent-framed Avro and registers its schemas through the registry's Confluent API, so
the stock ``AvroDeserializer`` with a ``SchemaRegistryClient`` decodes every record: it reads the schema id from
the framing and fetches that schema (once) from the registry. Needs only ``pip install
'confluent-kafka[avro,schemaregistry]'`` (the connector's own virtualenv has it).

    python examples/python/consume.py --topic binance.spot.miniticker --max 10

Prices and volumes are decimal strings on purpose (exact, as Binance sends them): use ``decimal.Decimal`` for
arithmetic, never float. ``event_time`` is a timestamp-millis logical type, decoded as an aware ``datetime``.
"""

from __future__ import annotations

import argparse
import os
import sys
from decimal import Decimal

from confluent_kafka import Consumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap-servers", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"))
    parser.add_argument("--schema-registry-url", default=os.environ.get("SCHEMA_REGISTRY_URL", ""),
                        help="the registry's Confluent API, e.g. http://localhost:8080/apis/ccompat/v7")
    parser.add_argument("--topic", default="binance.spot.miniticker")
    parser.add_argument("--group", default="consume-example", help="consumer group (offsets are committed)")
    parser.add_argument("--max", type=int, default=0, help="stop after this many records (0: run until Ctrl-C)")
    args = parser.parse_args()
    if not args.schema_registry_url:
        parser.error("set --schema-registry-url or SCHEMA_REGISTRY_URL")

    deserialize = AvroDeserializer(SchemaRegistryClient({"url": args.schema_registry_url}))
    consumer = Consumer({"bootstrap.servers": args.bootstrap_servers, "group.id": args.group,
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([args.topic])
    seen = 0
    try:
        while not args.max or seen < args.max:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error() is not None:
                print(f"consumer error: {msg.error()}", file=sys.stderr)
                continue
            ticker = deserialize(msg.value(), SerializationContext(msg.topic(), MessageField.VALUE))
            change = Decimal(ticker["close_price"]) - Decimal(ticker["open_price"])
            print(f"{ticker['symbol']}\t{ticker['close_price']}\t{change}\t{ticker['event_time'].isoformat()}",
                  flush=True)
            seen += 1
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
