"""Sources and sinks: adapters around the pipeline; the core never imports them."""
