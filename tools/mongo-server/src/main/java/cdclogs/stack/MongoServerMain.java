/*
 * Launcher for mongo-java-server, the MongoDB stand-in of the cdc-logs local stack (scripts/stack).
 *
 * No mongod can be installed on the project's machines, so the local stack serves the MongoDB wire
 * protocol with mongo-java-server's in-memory backend. Two settings matter for change data capture:
 *
 *  - The oplog must be switched on (MongoServer#enableOplog). Without it every $changeStream
 *    aggregation fails with "NoReplicationEnabled" -- this is mongo-java-server's equivalent of
 *    "the server must be a replica set member". The server still answers `hello` as a standalone,
 *    so clients must NOT pass replicaSet=... in the URI.
 *  - The reported server version. mongo-java-server's newest built-in profile reports wire version 8
 *    (MongoDB 4.2), and current drivers (PyMongo 4.14+) refuse anything below wire version 9
 *    (MongoDB 4.4). The launcher therefore reports 4.4.0 / wire 9 by default (--wire-version to change).
 *  - `operationTime` in aggregate replies. A replica-set member stamps every reply with it, and drivers
 *    (PyMongo) insist on it when a change stream's first batch is empty: they keep it to resume with
 *    startAtOperationTime should the cursor die before the first event. mongo-java-server omits it, so
 *    the launcher adds the oplog-clock time taken just before the command ran (seconds resolution:
 *    such a resume may replay events of that second -- at-least-once, never a gap).
 *
 * Usage: java -cp 'lib/*' cdclogs.stack.MongoServerMain [--host 127.0.0.1] [--port 27017]
 *                                                        [--wire-version 9]
 * Data lives in memory only: a restart starts empty (and resume tokens from before it are invalid).
 */
package cdclogs.stack;

import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.MongoVersion;
import de.bwaldvogel.mongo.backend.memory.MemoryBackend;
import de.bwaldvogel.mongo.bson.BsonTimestamp;
import de.bwaldvogel.mongo.bson.Document;
import de.bwaldvogel.mongo.wire.message.MongoMessage;

import java.time.Instant;

import java.util.List;
import java.util.concurrent.CountDownLatch;

public final class MongoServerMain {

    /** A server version profile with an explicit wire version (the built-in enum stops at 8). */
    private record ReportedVersion(List<Integer> versionArray, int wireVersion) implements MongoVersion {
        @Override
        public List<Integer> getVersionArray() {
            return versionArray;
        }

        @Override
        public int getWireVersion() {
            return wireVersion;
        }
    }

    /** The in-memory backend, with `operationTime` added to aggregate replies (see the header comment). */
    private static final class ChangeStreamFriendlyBackend extends MemoryBackend {
        @Override
        public Document handleMessage(MongoMessage message) {   // OP_MSG, what current drivers send
            Instant before = getClock().instant();
            Document reply = super.handleMessage(message);
            String command = message.getDocument().keySet().stream().findFirst().orElse("");
            if (reply != null && "aggregate".equalsIgnoreCase(command) && reply.containsKey("cursor")
                    && !reply.containsKey("operationTime")) {
                reply.put("operationTime", new BsonTimestamp(before, 0));
            }
            return reply;
        }
    }

    private MongoServerMain() {
    }

    /** Map a wire version to the MongoDB release that introduced it (only the ones drivers check). */
    private static List<Integer> releaseFor(int wireVersion) {
        if (wireVersion >= 17) {
            return List.of(6, 0, 0);
        }
        if (wireVersion >= 13) {
            return List.of(5, 0, 0);
        }
        if (wireVersion >= 9) {
            return List.of(4, 4, 0);
        }
        return List.of(4, 2, 0);
    }

    public static void main(String[] args) throws InterruptedException {
        String host = "127.0.0.1";
        int port = 27017;
        int wireVersion = 9;
        for (int i = 0; i < args.length; i++) {
            String flag = args[i];
            if (i + 1 >= args.length) {
                usage("missing value for " + flag);
            }
            String value = args[++i];
            switch (flag) {
                case "--host" -> host = value;
                case "--port" -> port = Integer.parseInt(value);
                case "--wire-version" -> wireVersion = Integer.parseInt(value);
                default -> usage("unknown option " + flag);
            }
        }

        MemoryBackend backend = new ChangeStreamFriendlyBackend();
        backend.version(new ReportedVersion(releaseFor(wireVersion), wireVersion));
        MongoServer server = new MongoServer(backend);
        server.enableOplog();   // change streams need the oplog (see the header comment)
        server.bind(host, port);

        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            server.shutdown();
            stopped.countDown();
        }, "mongo-server-shutdown"));

        System.err.printf("mongo-java-server listening on %s:%d (wire version %d, oplog enabled)%n",
                host, port, wireVersion);
        stopped.await();
    }

    private static void usage(String problem) {
        System.err.println(problem);
        System.err.println("usage: MongoServerMain [--host 127.0.0.1] [--port 27017] [--wire-version 9]");
        System.exit(2);
    }
}
