package cdclogs.stack;

import io.apicurio.common.apps.config.DynamicConfigPropertyList;
import java.util.ArrayList;
import javax.enterprise.context.ApplicationScoped;
import javax.enterprise.inject.Produces;

/**
 * The bean Apicurio's config-index build step generates (the list of settings that may be changed at run
 * time). That step's deployment jar is not on Maven Central, so the registry runs with an empty list:
 * every setting is fixed at start, which is all the tests need.
 */
@ApplicationScoped
public class DynamicConfigBeans {
    @Produces
    @ApplicationScoped
    DynamicConfigPropertyList dynamicConfigProperties() {
        return new DynamicConfigPropertyList(new ArrayList<>());
    }
}
