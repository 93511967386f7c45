import fraudstream


def test_all_lists_exactly_the_public_names() -> None:
    public = {name for name in dir(fraudstream) if not name.startswith("_")}
    modules = {"config", "decide", "detectors", "engine", "io", "profiles", "reference"}
    modules |= {
        "rules",
        "run",
        "schema",
        "testing",
        "simulate",
        "cli",
        "web",
    }
    modules |= {"cli_options", "assembly"}
    modules |= {"recovery", "cardnumbers", "startup"}
    modules |= {"features", "models", "model_cli"}
    modules |= {"flink"}
    modules |= {"backtest"}
    assert set(fraudstream.__all__) - {"__version__"} == public - modules
    assert fraudstream.__all__ == sorted(fraudstream.__all__)
