package example;

import io.apicurio.registry.serde.Default4ByteIdHandler;
import io.apicurio.registry.serde.avro.AvroSerde;
import io.apicurio.registry.serde.config.IdOption;
import io.apicurio.registry.serde.config.SerdeConfig;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.avro.generic.GenericRecord;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KStream;

/**
 * A Kafka Streams app over the connector's ticker topics: prints each record's symbol, close price and event
 * time, and keeps a running count of records per symbol.
 *
 * <p>Decoding: the connector writes Confluent framing (magic byte 0, then the 4-byte schema id the registry's
 * Confluent API returned). Against Apicurio Registry that id is the schema's <em>content id</em>, so the
 * Apicurio serde is configured to read a 4-byte id ({@link Default4ByteIdHandler}) and to look it up as a content
 * id ({@link IdOption#contentId}). Both are the 3.x defaults; they are set here so the intent is visible. The
 * serde talks to the registry's own API ({@code /apis/registry/v3}), not to {@code /apis/ccompat/v7}.
 *
 * <p>Usage: {@code java -cp 'target/classes:target/lib/*' example.TickerStreams BOOTSTRAP REGISTRY_V3_URL TOPIC
 * [APPLICATION_ID] [MAX_RECORDS] [TIMEOUT_S]}. With MAX_RECORDS it stops after that many records (exit 0), or
 * after TIMEOUT_S seconds without reaching it (exit 1); without, it runs until Ctrl-C.
 */
public final class TickerStreams {

    private TickerStreams() {
    }

    public static void main(String[] args) throws InterruptedException {
        if (args.length < 3) {
            System.err.println("usage: TickerStreams BOOTSTRAP REGISTRY_V3_URL TOPIC [APPLICATION_ID] [MAX_RECORDS]"
                    + " [TIMEOUT_S]");
            System.exit(2);
        }
        String bootstrap = args[0];
        String registryUrl = args[1];
        String topic = args[2];
        String applicationId = args.length > 3 ? args[3] : "ticker-streams-example";
        long maxRecords = args.length > 4 ? Long.parseLong(args[4]) : 0;
        long timeoutS = args.length > 5 ? Long.parseLong(args[5]) : 120;

        Map<String, Object> serdeConfig = new HashMap<>();
        serdeConfig.put(SerdeConfig.REGISTRY_URL, registryUrl);
        serdeConfig.put(SerdeConfig.ID_HANDLER, Default4ByteIdHandler.class.getName());
        serdeConfig.put(SerdeConfig.USE_ID, IdOption.contentId.name());
        AvroSerde<GenericRecord> values = new AvroSerde<>();
        values.configure(serdeConfig, false);

        AtomicLong seen = new AtomicLong();
        CountDownLatch enough = new CountDownLatch(1);
        StreamsBuilder builder = new StreamsBuilder();
        KStream<String, GenericRecord> tickers = builder.stream(topic, Consumed.with(Serdes.String(), values));
        tickers.foreach((symbol, ticker) -> {
            // Decimals are strings on purpose (exact); event_time is timestamp-millis (a long without conversions).
            System.out.printf("ticker\t%s\t%s\t%s%n", ticker.get("symbol"), ticker.get("close_price"),
                    ticker.get("event_time"));
            if (maxRecords > 0 && seen.incrementAndGet() >= maxRecords) {
                enough.countDown();
            }
        });
        tickers.groupByKey(Grouped.with(Serdes.String(), values))
                .count()
                .toStream()
                .foreach((symbol, count) -> System.out.printf("count\t%s\t%d%n", symbol, count));

        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, applicationId);
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0); // print every count update, not batches
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 1000);
        props.put("auto.offset.reset", "earliest");

        KafkaStreams streams = new KafkaStreams(builder.build(), props);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> streams.close(Duration.ofSeconds(10))));
        streams.start();
        if (maxRecords == 0) {
            enough.await();
            return;
        }
        boolean reached = enough.await(timeoutS, TimeUnit.SECONDS);
        streams.close(Duration.ofSeconds(30));
        System.out.flush();
        if (!reached) {
            System.err.printf("only %d of %d records within %d s%n", seen.get(), maxRecords, timeoutS);
        }
        System.exit(reached ? 0 : 1);
    }
}
