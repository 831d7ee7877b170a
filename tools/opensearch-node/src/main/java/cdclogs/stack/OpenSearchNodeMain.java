package cdclogs.stack;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.opensearch.common.settings.Settings;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.index.reindex.ReindexPlugin;
import org.opensearch.node.Node;
import org.opensearch.transport.Netty4Plugin;

/**
 * A single-node OpenSearch for tests, from the server library, its Netty transport plugin and the
 * reindex module (_delete_by_query).
 *
 * <p>Node's public constructor loads plugins from a distribution's plugins/ and modules/ folders, which
 * we do not have; the protected one takes plugin classes from the classpath instead. Bootstrap checks
 * (mmap counts, file descriptors) and the security manager belong to the distribution's Bootstrap and
 * do not run here, which is acceptable for a loopback test server and wrong for production.
 */
public final class OpenSearchNodeMain extends Node {
    private OpenSearchNodeMain(Settings settings) {
        super(InternalSettingsPreparer.prepareEnvironment(settings, Map.of(), null, () -> "node-1"),
              List.of(Netty4Plugin.class, ReindexPlugin.class), true);
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            System.err.println("usage: OpenSearchNodeMain HOME [HTTP_PORT] [HOST]");
            System.exit(2);
        }
        Path home = Path.of(args[0]).toAbsolutePath();
        String port = args.length > 1 ? args[1] : "9200";
        String host = args.length > 2 ? args[2] : "127.0.0.1";
        Settings settings = Settings.builder()
            .put("path.home", home.toString())
            .put("path.data", home.resolve("data").toString())
            .put("path.logs", home.resolve("logs").toString())
            .put("cluster.name", "cdc-logs-stack")
            .put("node.name", "node-1")
            .put("network.host", host)
            .put("http.port", port)
            .put("transport.port", "9300-9399")
            .put("discovery.type", "single-node")
            .put("http.type", Netty4Plugin.NETTY_HTTP_TRANSPORT_NAME)
            .put("transport.type", Netty4Plugin.NETTY_TRANSPORT_NAME)
            // One node: replicas could never be assigned and would keep every index yellow.
            .put("cluster.routing.allocation.disk.threshold_enabled", false)
            .build();
        Node node = new OpenSearchNodeMain(settings);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
            } catch (Exception e) {
                // exiting anyway
            }
        }, "opensearch-shutdown"));
        node.start();
        System.out.println("opensearch node started on " + host + ":" + port);
        Thread.currentThread().join();
    }
}
