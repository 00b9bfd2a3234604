package kstatefun.bench;

import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;

import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Repartitioned;
import org.apache.kafka.streams.state.KeyValueStore;

/**
 * The benchmark's Kafka Streams contender: W1 (count per key) and W2 (two counts through a
 * repartition topic), exactly_once_v2, RocksDB stores with changelog topics.
 *
 * <pre>
 * java -cp CLASSPATH kstatefun.bench.KStreamsBench --mode w1|w2 --bootstrap B --group G \
 *     --ingress IN --egress OUT --state-dir DIR [--commit-interval SECONDS]
 * </pre>
 *
 * W1: ingress → count per key → egress "&lt;key&gt;:&lt;count&gt;", as bench/peers/quix_app.py.
 * W2: ingress → count A per key → repartition topic → count B per key → egress
 * "&lt;key&gt;:&lt;count B&gt;". Values stay bytes (never decoded). With the record cache off
 * every event gives one output. Stops on SIGTERM: the shutdown hook closes KafkaStreams.
 */
public final class KStreamsBench {
    public static void main(String[] argv) throws InterruptedException {
        Map<String, String> args = parse(argv);
        String mode = args.get("mode");
        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, args.get("group"));
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args.get("bootstrap"));
        props.put(StreamsConfig.STATE_DIR_CONFIG, args.get("state-dir"));
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
        if (args.containsKey("commit-interval")) { // seconds; else Streams' own, 100 ms with EOS
            long ms = Math.round(Double.parseDouble(args.get("commit-interval")) * 1000);
            props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, ms);
        }
        // no record cache: a count's every update is forwarded, so one output per event
        props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        props.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
        props.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");

        StreamsBuilder builder = new StreamsBuilder();
        KStream<String, byte[]> ingress = builder.stream(
                args.get("ingress"), Consumed.with(Serdes.String(), Serdes.ByteArray()));
        KTable<String, Long> counts = ingress
                .groupByKey(Grouped.with(Serdes.String(), Serdes.ByteArray()))
                .count(store("count"));
        if (mode.equals("w2")) {
            counts = counts.toStream()
                    // <application.id>-mid-repartition: the benchmark creates it beforehand
                    .repartition(Repartitioned.with(Serdes.String(), Serdes.Long()).withName("mid"))
                    .groupByKey(Grouped.with(Serdes.String(), Serdes.Long()))
                    .count(store("count-b"));
        } else if (!mode.equals("w1")) {
            throw new IllegalArgumentException("--mode must be w1 or w2, not " + mode);
        }
        counts.toStream()
                .mapValues((key, n) -> key + ":" + n)
                .to(args.get("egress"), Produced.with(Serdes.String(), Serdes.String()));

        KafkaStreams streams = new KafkaStreams(builder.build(), props);
        CountDownLatch stopped = new CountDownLatch(1);
        streams.setUncaughtExceptionHandler(e -> {
            e.printStackTrace();
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        streams.setStateListener((now, before) -> {
            if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.NOT_RUNNING) {
                stopped.countDown();
            }
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close(Duration.ofSeconds(20));
            stopped.countDown();
        }, "shutdown"));
        streams.start();
        System.err.println("started mode=" + mode + " application.id=" + args.get("group"));
        stopped.await();
        System.err.println("stopped state=" + streams.state());
        if (streams.state() == KafkaStreams.State.ERROR) {
            System.exit(1);
        }
    }

    private static Materialized<String, Long, KeyValueStore<Bytes, byte[]>> store(String name) {
        // the default persistent store: RocksDB, logged to <application.id>-<name>-changelog
        return Materialized.<String, Long, KeyValueStore<Bytes, byte[]>>as(name)
                .withKeySerde(Serdes.String())
                .withValueSerde(Serdes.Long());
    }

    private static Map<String, String> parse(String[] argv) {
        Map<String, String> args = new HashMap<>();
        for (int i = 0; i + 1 < argv.length; i += 2) {
            if (!argv[i].startsWith("--")) {
                throw new IllegalArgumentException("expected --name value pairs, got " + argv[i]);
            }
            args.put(argv[i].substring(2), argv[i + 1]);
        }
        for (String required : new String[] {"mode", "bootstrap", "group", "ingress", "egress",
                "state-dir"}) {
            if (!args.containsKey(required)) {
                throw new IllegalArgumentException("missing --" + required);
            }
        }
        return args;
    }
}
