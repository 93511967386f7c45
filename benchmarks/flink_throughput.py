"""Throughput of the Flink runtime against the naive per-record PyFlink job and the embedded one.

    .venv-flink/bin/python benchmarks/flink_throughput.py [--records 1000000] [--cards 50000]
        [--output alerts] [--repeat 3] [--modes thread,process]
        [--shapes 1:fused,1:keyed,2:keyed,1:sharded]
    .venv-flink/bin/python benchmarks/flink_throughput.py --cluster [--records 2000000]
        [--cards 100000]
        (the scale-out figures on a two-TaskManager cluster: benchmarks/flink_scaleout.py)
        [--naive-modes process,thread]

On the same JSON-lines workload (seeded, under benchmarks/data/):

- ``fraudstream flink run --target local``: every standard detector decides every record;
  the alerts (``--output alerts``, like the walkthrough job) or every decision
  (``--output decisions``) written by Flink's FileSink; parallelism 1 fused (one operator,
  the default there) and sharded (``--graph sharded``), parallelism 2 sharded, in PyFlink's
  thread and process execution modes (``--modes``). Start-up
  (MiniCluster, Python workers, job submission) is measured separately with a 1,000-record
  run right before each full run and reported apart; the tx/s figure is records / the
  median over ``--repeat`` pairs of (full run - its start-up run).
- the naive baseline: Flink's fraud-detection walkthrough as a PyFlink
  ``KeyedProcessFunction`` (small-then-large only; per record: JSON parse, a keyed
  ``ValueState`` read/write, a timer), in process mode and in thread mode, start-up
  subtracted the same way.
- the embedded runtime (``fraudstream run``) on the same file, every detector, same output.

The runs of a pair follow each other, so a busy spell of the shared machine slows both
(start-up alone moves by a second between runs here, a whole 1 M run's work by far less);
every pair is kept in the result. Bar: the Flink
runtime >= 10 x the naive baseline; each Flink figure is printed against the
naive job in the same execution mode and against the best naive. Appends a line to
benchmarks/results/flink_throughput.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import record, workload  # noqa: E402

BAR = 10.0
FRAUDSTREAM = str(Path(sys.executable).with_name("fraudstream"))


def naive_job(path: str, mode: str, out: str) -> None:
    """In a fresh process: the walkthrough detector, a Python call and state access per record."""
    from pyflink.common import Configuration, Types, WatermarkStrategy
    from pyflink.common.serialization import Encoder
    from pyflink.datastream import KeyedProcessFunction, StreamExecutionEnvironment
    from pyflink.datastream.connectors.file_system import FileSink, FileSource, StreamFormat
    from pyflink.datastream.state import ValueStateDescriptor

    from fraudstream.flink.job import python_path

    small, large, minute = 1.00, 500.00, 60 * 1000

    class FraudDetector(KeyedProcessFunction):  # type: ignore[misc]
        """Apache Flink's walkthrough FraudDetector, line for line in PyFlink."""

        def open(self, runtime_context: Any) -> None:
            self.flag = runtime_context.get_state(ValueStateDescriptor("flag", Types.BOOLEAN()))
            self.timer = runtime_context.get_state(ValueStateDescriptor("timer", Types.LONG()))

        def process_element(self, value: Any, ctx: Any) -> Any:
            _, amount = value
            if self.flag.value() is not None:
                if amount > large:
                    yield f"alert {ctx.get_current_key()}"
                self._clean_up(ctx)
            if amount < small:
                self.flag.update(True)
                timer = ctx.timer_service().current_processing_time() + minute
                ctx.timer_service().register_processing_time_timer(timer)
                self.timer.update(timer)

        def on_timer(self, timestamp: int, ctx: Any) -> Any:
            self.timer.clear()
            self.flag.clear()
            return iter(())

        def _clean_up(self, ctx: Any) -> None:
            timer = self.timer.value()
            if timer is not None:
                ctx.timer_service().delete_processing_time_timer(timer)
            self.timer.clear()
            self.flag.clear()

    def parse(line: str) -> tuple[str, float]:
        record = json.loads(line)
        return record["card_id"], float(record["amount"])

    os.environ["PYTHONPATH"] = python_path()
    conf = Configuration()
    conf.set_string("python.execution-mode", mode)
    conf.set_string("python.executable", sys.executable)
    conf.set_string("python.client.executable", sys.executable)
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(1)
    source = FileSource.for_record_stream_format(StreamFormat.text_line_format(), path).build()
    alerts = (
        env.from_source(source, WatermarkStrategy.no_watermarks(), "transactions")
        .map(parse, output_type=Types.TUPLE([Types.STRING(), Types.DOUBLE()]))
        .key_by(lambda tx: tx[0], key_type=Types.STRING())
        .process(FraudDetector(), output_type=Types.STRING())
    )
    alerts.sink_to(FileSink.for_row_format(out, Encoder.simple_string_encoder()).build())
    env.execute("naive walkthrough")


def timed(command: list[str], before: Any = None) -> float:
    """Wall seconds of a command in a fresh process (it must succeed); ``before`` runs ahead
    of it (clearing the outputs)."""
    if before is not None:
        before()
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def paired(small: list[str], big: list[str], repeat: int, before: Any = None) -> dict[str, Any]:
    """``repeat`` pairs of runs, a start-up run (1,000 records) right before each full run, so
    a busy spell of the shared machine hits both; the figure is the median of the pairs'
    differences (start-up alone moves by a second between runs here, the work of a 1 M run
    by far less)."""
    pairs = [(timed(small, before), timed(big, before)) for _ in range(repeat)]
    return {"pairs": pairs, "work_s": statistics.median(b - s for s, b in pairs)}


# --shapes, (parallelism, job shape): at parallelism 1 the job runs fused by default (one
# operator); the sharded job (sequencer, card and user shards, decide) is what scales out.
def flink_command(
    path: Path, out: Path, parallelism: int, shape: str, output: str, mode: str
) -> list[str]:
    """`fraudstream flink run --target local` writing alerts or decisions."""
    return [
        FRAUDSTREAM, "flink", "run", "--input", str(path),
        f"--{output}", str(out / output), "--checkpoint-dir", str(out / "chk"),
        "--parallelism", str(parallelism), "--execution-mode", mode,
        "--graph", shape, "--target", "local", "--quiet",
    ]  # fmt: skip


def flink_name(parallelism: int, shape: str, mode: str) -> str:
    """The result key of a Flink runtime run."""
    return f"flink runtime, all detectors, parallelism {parallelism} {shape}, {mode} mode"


def naive_name(mode: str) -> str:
    """The result key of a naive baseline run."""
    return f"naive KeyedProcessFunction (walkthrough), {mode} mode"


def rate(records: int, runs: dict[str, Any]) -> dict[str, Any]:
    """tx/s over the median work time (full run minus its start-up run), with the runs."""
    pairs = runs["pairs"]
    return {
        "records": records,
        "tx_s": records / max(runs["work_s"], 1e-9),
        "work_s": runs["work_s"],
        "startup_s": statistics.median(small for small, _ in pairs),
        "seconds": statistics.median(big for _, big in pairs),
        "pairs": [[round(small, 3), round(big, 3)] for small, big in pairs],
    }


def main() -> None:
    if "--cluster" in sys.argv:  # the scale-out run on a real cluster
        sys.argv.remove("--cluster")
        from flink_scaleout import main as scaleout

        scaleout()
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--cards", type=int, default=50_000)
    parser.add_argument("--output", choices=("alerts", "decisions"), default="alerts")
    parser.add_argument(
        "--modes", default="thread,process", help="PyFlink execution modes of the Flink runtime"
    )
    parser.add_argument(
        "--shapes",
        default="1:fused,1:keyed,2:keyed,1:sharded",
        help="parallelism:graph of each job",
    )
    parser.add_argument("--naive-modes", default="process,thread", help="modes of the naive job")
    parser.add_argument(
        "--repeat", type=int, default=3, help="pairs of runs (start-up, full) per figure"
    )
    args = parser.parse_args()
    repeat = max(1, args.repeat)
    modes = [mode for mode in args.modes.split(",") if mode]
    naive_modes = [mode for mode in args.naive_modes.split(",") if mode]
    shapes = [(int(p), shape) for p, shape in (item.split(":") for item in args.shapes.split(","))]
    data = workload(args.records, args.cards, ".jsonl")
    small = workload(1_000, 1_000, ".jsonl")
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)

        def fresh(name: str) -> Path:
            target = work / name
            shutil.rmtree(target, ignore_errors=True)
            return target

        def flink_runs(parallelism: int, shape: str, mode: str) -> dict[str, Any]:
            def command(path: Path) -> list[str]:
                return flink_command(path, work / "flink", parallelism, shape, args.output, mode)

            return paired(command(small), command(data), repeat, lambda: fresh("flink"))

        for mode in modes:
            for parallelism, shape in shapes:
                runs[flink_name(parallelism, shape, mode)] = rate(
                    args.records, flink_runs(parallelism, shape, mode)
                )
                print(f"  flink p{parallelism} {shape} {mode}: {runs[list(runs)[-1]]}")
        for mode in naive_modes:
            here = str(Path(__file__).resolve())
            base = [sys.executable, here, "--naive-mode", mode]
            out = ["--naive-out", str(work / "naive")]
            naive = paired(
                [*base, "--naive-input", str(small), *out],
                [*base, "--naive-input", str(data), *out],
                repeat,
                lambda: fresh("naive"),
            )
            runs[naive_name(mode)] = rate(args.records, naive)
            print(f"  naive {mode}: {runs[list(runs)[-1]]}")
        embedded = [
            FRAUDSTREAM, "run", "--input", str(data),
            f"--{args.output}", str(work / "embedded.jsonl"), "--quiet",
        ]  # fmt: skip
        embedded_small = [*embedded[:3], str(small), *embedded[4:]]
        runs["embedded runtime (fraudstream run), all detectors"] = rate(
            args.records, paired(embedded_small, embedded, repeat)
        )
        print(f"  embedded: {runs[list(runs)[-1]]}")
    naive_rates = [v["tx_s"] for k, v in runs.items() if k.startswith("naive")]
    best_naive = max(naive_rates, default=None)  # None: --naive-modes ""
    for mode in modes:
        same = runs.get(naive_name(mode), {}).get("tx_s")
        for parallelism, shape in shapes:
            figure = runs[flink_name(parallelism, shape, mode)]["tx_s"]
            versus = []
            if same:
                versus.append(
                    f"{figure / same:.1f} x the naive job in {mode} mode ({same:,.0f} tx/s)"
                )
            if best_naive:
                versus.append(
                    f"{figure / best_naive:.1f} x the best naive ({best_naive:,.0f} tx/s)"
                )
            compared = f" = {', '.join(versus)}; bar {BAR:g} x" if versus else ""
            print(f"flink p{parallelism} {shape} {mode}: {figure:,.0f} tx/s{compared}")
    result = {"records": args.records, "cards": args.cards, "output": args.output}
    result.update(repeat=repeat, runs=runs)
    record("flink_throughput", result)


if __name__ == "__main__":
    if "--naive-mode" in sys.argv:
        options = dict(zip(sys.argv[1::2], sys.argv[2::2], strict=False))
        naive_job(options["--naive-input"], options["--naive-mode"], options["--naive-out"])
    else:
        main()
