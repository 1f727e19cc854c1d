"""The model, headless: the engine, hosts, allowlists, reports, runs and evidence."""
