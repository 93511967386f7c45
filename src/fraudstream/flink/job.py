"""The Flink job graph: source -> sequencer -> card / user detector shards -> decide -> sinks.

::

  FileSource / KafkaSource (lines)          parallelism 1
    -> key 0: SequenceFunction              parallelism 1 (decode, dedup, event clock, cut)
       -> key card shard: DetectorFunction   parallelism P (card-keyed detectors)
       -> key user shard: DetectorFunction   parallelism P (user-keyed detectors)
          -> key micro-batch: DecideFunction parallelism P (join, combine, explain)
  dead letters, late, decisions, alerts, enriched -> FileSink (exactly once) or KafkaSink

Records travel as micro-batches (a part = one shard's records of one released batch), so a
Python call handles thousands of records and the numba kernels run over arrays, while every
piece of state sits in Flink keyed state under a stable operator uid.
"""

from __future__ import annotations

import os
import site
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fraudstream.flink.hooks import Hooks
from fraudstream.flink.key_groups import shard_keys
from fraudstream.flink.stages import PipelineParts
from fraudstream.flink.uris import is_local, to_uri

KAFKA_CONNECTOR = "flink-sql-connector-kafka-4.0.1-2.0.jar"
OUTPUTS = ("decisions", "alerts", "enriched", "dead_letters", "late")
JOB_NAME = "fraudstream"
BATCH_BYTES = 262_144 * 128  # the embedded file source's read size (io.files.BATCH_ROWS x 128)

__all__ = ["BATCH_BYTES", "KAFKA_CONNECTOR", "OUTPUTS", "FlinkJob", "python_path"]


@dataclass
class FlinkJob:
    """Everything `fraudstream flink run` needs to build and run the job."""

    parts: PipelineParts
    inputs: list[str]  # files or directories (file:// or any Flink file system URI)
    outputs: dict[str, str]  # output name -> directory (or kafka topic with kafka_servers)
    checkpoint_dir: str
    monitor_ms: int | None = None  # watch the input directories for new files
    parallelism: int = 1
    # Records travel in parts per shard: fewer shards, bigger parts (a part's fixed cost is
    # paid per shard pair between the card and user stages); at most this many subtasks work.
    shards: int = 8
    max_parallelism: int = 128  # Flink's key groups: the most a savepoint can rescale to
    checkpoint_interval_ms: int = 10_000
    state_backend: str = "hashmap"  # or "rocksdb"
    restart_attempts: int = 3
    restart_delay_ms: int = 1_000
    jobmanager: str | None = None  # host:port of a remote cluster's REST endpoint
    detach: bool = False  # remote only: submit and return (run() gives the job id)
    savepoint: str | None = None  # start from this savepoint (or retained checkpoint)
    jars: list[str] = field(default_factory=list)
    # The TaskManagers' Python: a packed venv shipped with the job (python.archives, as
    # "archive#dir") and the interpreter to run (python.executable; default this one).
    python_archive: str | None = None
    python_executable: str | None = None
    kafka_servers: str | None = None  # with a connector jar: read/write Kafka topics
    kafka_topic: str = "card-transactions"
    batch_bytes: int = BATCH_BYTES
    flush_ms: int = 200
    read_lines: bool = False  # bounded files through Flink's FileSource line by line
    # PyFlink's "process" mode (Beam Python workers) or "thread" (pemja: Python inside the
    # TaskManager's JVM, no gRPC data plane). See :meth:`configuration` for thread mode's
    # one condition: one Python operator per task thread.
    execution_mode: str = "thread"
    # "keyed" (fraudstream.flink.keyed), "fused" (one operator: fraudstream.flink.fused) or
    # "sharded" (sequencer and shards); None: keyed where it can run, else fused at
    # parallelism 1 on bounded files read in chunks, else sharded.
    graph: str | None = None
    fault: Any = None  # functions.Fault (tests only)
    hooks: Hooks | None = None  # the decision store and alert hooks (flink.hooks)
    rules_updates: str | None = None  # a directory watched for rules versions (keyed job)
    audit_log: str | None = None  # where rules changes are logged (default: DIR.audit.jsonl)
    profiles_updates: str | None = None  # a directory watched for profile upserts (keyed job)
    _planned: Future[list[Any]] | None = field(default=None, init=False, repr=False)

    def configuration(self) -> Any:
        """The Flink configuration: execution mode, checkpoints, state backend, restarts."""
        from pyflink.common import Configuration

        conf = Configuration()
        conf.set_string("python.execution-mode", self.execution_mode)
        if self.execution_mode == "thread":
            # pemja gives every Python operator its own thread state; chained operators share
            # one task thread, so all but one run under a thread state that CPython's
            # PyGILState API does not know as this thread's. pyarrow frees buffers that wrap
            # Python memory (NumPy arrays, bytes) under PyGILState_Ensure(), which then waits
            # for the GIL its own thread holds: the job hangs. Unchained, each Python operator
            # (the key-by selectors too) runs alone on its task thread and this cannot happen.
            conf.set_string("pipeline.operator-chaining.enabled", "false")
        conf.set_string("python.executable", self.python_executable or sys.executable)
        conf.set_string("python.client.executable", sys.executable)
        if self.python_archive:
            conf.set_string("python.archives", self.python_archive)
        conf.set_string("python.fn-execution.bundle.size", "100000")
        conf.set_string("state.backend.type", self.state_backend)
        if self.state_backend == "rocksdb":  # a checkpoint writes the SST files new since
            conf.set_string("execution.checkpointing.incremental", "true")
            # Universal (size-tiered) compaction: the cards a minute touches are spread over
            # the whole key range, so a levelled compaction of new files into the level below
            # rewrote nearly all of it (43-50 % of a million cards' state in one checkpoint,
            # benchmarks/flink_checkpoint_delta.py); size tiers rewrite the big base rarely.
            conf.set_string("state.backend.rocksdb.compaction.style", "UNIVERSAL")
        conf.set_string("execution.checkpointing.dir", to_uri(self.checkpoint_dir))
        conf.set_string("execution.checkpointing.interval", f"{self.checkpoint_interval_ms} ms")
        conf.set_string("execution.checkpointing.mode", "EXACTLY_ONCE")
        conf.set_string("restart-strategy.type", "fixed-delay")
        conf.set_string("restart-strategy.fixed-delay.attempts", str(self.restart_attempts))
        conf.set_string("restart-strategy.fixed-delay.delay", f"{self.restart_delay_ms} ms")
        conf.set_string("pipeline.max-parallelism", str(self.max_parallelism))
        if self.savepoint:
            conf.set_string("execution.state-recovery.path", to_uri(self.savepoint))
        if self.jobmanager:
            host, _, port = self.jobmanager.rpartition(":")
            conf.set_string("execution.target", "remote")
            conf.set_string("execution.attached", str(not self.detach).lower())
            conf.set_string("rest.address", host)
            conf.set_string("rest.port", port)
        return conf

    def environment(self) -> Any:
        """A StreamExecutionEnvironment for this job (MiniCluster unless ``jobmanager``)."""
        os.environ["PYTHONPATH"] = python_path()  # the embedded interpreter's sys.path
        from pyflink.datastream import StreamExecutionEnvironment

        conf = self.configuration()
        if not self.jobmanager:
            env = StreamExecutionEnvironment.get_execution_environment(conf)
        else:
            # From a Python client getExecutionEnvironment(conf) always builds a local
            # environment (a MiniCluster, whatever execution.target says); the environment
            # built on the configuration alone picks its executor by execution.target.
            from pyflink.java_gateway import get_gateway

            jvm = get_gateway().jvm
            j_env = jvm.org.apache.flink.streaming.api.environment.StreamExecutionEnvironment(
                conf._j_configuration  # PyFlink's own handle on the Java configuration
            )
            env = StreamExecutionEnvironment(j_env)
            # The package goes to the cluster's Python workers. flink-python itself must be
            # on the cluster's class path (its lib/): loaded per job, pemja's native library
            # cannot load again in the next job's class loader.
            env.add_python_file(str(Path(__file__).resolve().parents[1]))
        if self.jars:
            env.add_jars(*[to_uri(jar) for jar in self.jars])
        return env

    def build(self, env: Any) -> None:
        """Adds the job graph to ``env``."""
        from pyflink.common import Types

        from fraudstream.flink.functions import (
            OUTPUT_TAGS,
            PICKLED,
            USER_PARTS,
            ChunkSequenceFunction,
            DecideFunction,
            DetectorFunction,
            SequenceFunction,
        )

        if self.keyed:
            self._build_keyed(env)
            return
        env.set_parallelism(1)  # source, its key-by and the sequencer keep arrival order
        live = self.monitor_ms is not None or self.kafka_servers is not None
        if live or self.read_lines:
            function: Any = SequenceFunction(
                self.parts, self.shards, self.batch_bytes, live, self.flush_ms,
                self.wanted, fault=self.fault,
            )  # fmt: skip
            records = self._source(env)
        else:
            chunks = self.plan()
            function = ChunkSequenceFunction(
                self.parts, self.shards, chunks, self.wanted, fault=self.fault
            )
            records = env.from_collection(
                [chunk.to_json() for chunk in chunks], type_info=Types.STRING()
            ).uid("fraudstream-chunks")
            if self.fused:
                self._build_fused(records, chunks)
                return
        sequenced = (
            records.key_by(lambda _: 0, key_type=Types.INT())
            .process(function, output_type=PICKLED)
            .name("decode, dedupe, event clock")
            .uid("fraudstream-sequencer")
        )
        # The key-by of the parts runs where the sequencer runs (parallelism 1, chained), so
        # each shard receives its parts over one channel, in the sequencer's order; with the
        # cluster's parallelism it would be a round-robin hop and parts could overtake.
        # Each shard keyed by an int of its own key group, spread evenly over them.
        keys = shard_keys(self.shards, self.max_parallelism)
        card_parts = sequenced.key_by(lambda v: keys[v[0]], key_type=Types.INT())
        user_parts = sequenced.get_side_output(USER_PARTS).key_by(
            lambda v: keys[v[0]], key_type=Types.INT()
        )
        env.set_parallelism(self.parallelism)
        # Only the sequencer needs the labels, and the detector shards no model at all.
        spec = self.parts.model
        detecting = replace(self.parts, model=None)
        deciding = self.parts if spec is None else replace(self.parts, model=spec.lean())
        cards = (
            card_parts.process(DetectorFunction(detecting, "card"), output_type=PICKLED)
            .name("card detectors")
            .uid("fraudstream-card-detectors")
        )
        users = (
            user_parts.process(DetectorFunction(detecting, "user"), output_type=PICKLED)
            .name("user detectors")
            .uid("fraudstream-user-detectors")
        )
        decided = (
            cards.union(users)
            .key_by(lambda v: v[0], key_type=Types.LONG())
            .process(DecideFunction(deciding, self.wanted, self.fault), output_type=PICKLED)
            .name("decide")
            .uid("fraudstream-decide")
        )
        for name, target in self.outputs.items():
            # dead letters and late records leave the sequencer, the rest the join
            origin = sequenced if name in ("dead_letters", "late") else decided
            self._sink(origin.get_side_output(OUTPUT_TAGS[name]), name, target)
        self._add_hooks(decided)

    @property
    def wanted(self) -> frozenset[str]:
        """The side outputs the job emits: its outputs' and its hooks'."""
        hooks: frozenset[str] = frozenset() if self.hooks is None else self.hooks.wanted
        return frozenset(self.outputs) | hooks

    def _add_hooks(self, decided: Any) -> None:
        """The decision store and alert hooks on the deciding operator's side outputs."""
        if self.hooks is None:
            return
        from fraudstream.flink.functions import OUTPUT_TAGS

        self.hooks.add_to(lambda name: decided.get_side_output(OUTPUT_TAGS[name]))

    @property
    def chunked(self) -> bool:
        """Whether the input is bounded local files read in chunks (not line by line, not
        live; files on another file system, ``s3://``, go through Flink's FileSource)."""
        return not (self.read_lines or self.live) and all(is_local(path) for path in self.inputs)

    @property
    def live(self) -> bool:
        """Whether the input is live: watched directories or Kafka."""
        return self.monitor_ms is not None or bool(self.kafka_servers)

    @property
    def keyable(self) -> bool:
        """Whether the keyed job can run this: bounded files read in chunks or a live input.
        Bounded files read line by line (``--read-lines``, ``s3://``) stay on the sharded
        job: the live batches' processing-time windows would not fire at the end of a
        bounded input."""
        return self.chunked or self.live

    @property
    def keyed(self) -> bool:
        """Whether the job is the keyed job (:mod:`fraudstream.flink.keyed`)."""
        return self.graph == "keyed" or (self.graph is None and self.keyable)

    @property
    def fused(self) -> bool:
        """Whether the job runs as one operator (:mod:`fraudstream.flink.fused`)."""
        if self.graph is not None:
            return self.graph == "fused"
        return self.chunked and self.parallelism == 1 and not self.keyed

    def refuses(self) -> str | None:
        """Why the asked-for graph cannot run this job (one line), or None."""
        if self.rules_updates and not self.keyed:
            return "--rules-updates runs on the keyed job (--graph keyed: files or a live input)"
        if self.profiles_updates and not self.keyed:
            return "--profiles-updates runs on the keyed job (--graph keyed: files or a live input)"
        if self.parts.time.mode == "processing" and (
            self.fused or (self.parts.model and not self.keyed)
        ):
            return (
                "--time processing runs on the keyed job and the sharded job (with --model or "
                "--labels: the keyed job); not on --graph fused"
            )
        if self.graph == "keyed" and not self.keyable:
            return (
                "--graph keyed reads local files in chunks or a live input (--monitor-interval-ms,"
                " --kafka-servers); leave --graph out to get the graph that can"
            )
        if self.graph == "fused" and not self.chunked:
            return (
                "--graph fused reads bounded local files in chunks (not --kafka-servers, "
                "--monitor-ms or --read-lines)"
            )
        return None

    def _build_keyed(self, env: Any) -> None:
        """Parallel chunk source -> decode -> card key groups (-> merchant key groups, with a
        model: terminal features; -> each aggregate key space's key groups, with `when:`
        rules that aggregate) -> user key groups -> sinks, every operator at the job's
        parallelism (see :mod:`fraudstream.flink.keyed`)."""
        from pyflink.common import Duration, Types, WatermarkStrategy
        from pyflink.datastream.connectors.number_seq import NumberSequenceSource

        from fraudstream.flink.functions import OUTPUT_TAGS, PICKLED
        from fraudstream.flink.keyed import Routes
        from fraudstream.flink.keyed_functions import (
            AggregateWindows,
            CardDetectors,
            DecodeChunks,
            PartTime,
            TerminalFeatures,
            UserDetectors,
            window_state,
        )

        env.set_parallelism(self.parallelism)
        wanted = self.wanted
        parts = self.parts
        if parts.model is not None:  # the stages fold only the labels that mark a fraud
            parts = replace(parts, model=parts.model.keyed())
        # Records travel in parts of a chunk per shard (an int key landing in a key group of
        # its own): a Python call handles hundreds of records, not one. Per-key state lives
        # under its shard's key group; --shards fixes the most subtasks that get work.
        keys = shard_keys(self.shards, self.max_parallelism)
        if self.live:
            from fraudstream.flink.live_lines import DecodeLines, line_batches

            # Lines in parts spread over every key group: as many parts as key groups.
            lines = self._source(env)
            batches = line_batches(env, lines, self.max_parallelism, self.flush_ms)
            decoded = (
                batches.process(DecodeLines(parts, keys, wanted), output_type=PICKLED)
                .name("decode")
                .uid("fraudstream-decode")
            )
        else:
            plan = self.plan()
            numbers = env.from_source(
                NumberSequenceSource(0, max(len(plan) - 1, 0)),
                WatermarkStrategy.no_watermarks(),
                "chunks",
            ).uid("fraudstream-chunks")
            if not plan:  # an empty input: nothing to read (the source still needs a range)
                numbers = numbers.filter(lambda _: False).uid("fraudstream-no-chunks")
            decoded = (
                numbers.process(DecodeChunks(parts, plan, keys, wanted), output_type=PICKLED)
                .name("decode")
                .uid("fraudstream-decode")
            )
        timing = parts.time
        # Processing time: the watermark runs on arrival stamps, which only increase.
        out_of_orderness = Duration.of_millis(
            0 if timing.mode == "processing" else timing.out_of_orderness_ms
        )
        event_time = WatermarkStrategy.for_bounded_out_of_orderness(out_of_orderness)
        if self.live:  # a decoder idle by its own word is left out (flink.watermarks)
            from fraudstream.flink.watermarks import declared_idleness

            event_time = declared_idleness(
                env, 0 if timing.mode == "processing" else timing.out_of_orderness_ms
            )
        # Bounded: no idleness; a source's subtask finishes, and its watermark then ends.
        timed = decoded.assign_timestamps_and_watermarks(
            event_time.with_timestamp_assigner(PartTime())
        ).uid("fraudstream-event-time")
        card_function: Any = CardDetectors(parts, keys, wanted)
        user_function: Any = UserDetectors(parts, wanted)
        card_parts: Any = timed.key_by(lambda v: v[0], key_type=Types.INT())
        live_updates = bool(self.rules_updates or self.profiles_updates)
        if live_updates:  # rules versions and profiles broadcast to both (rules_broadcast)
            from fraudstream.flink.rules_broadcast import (
                LiveCardDetectors,
                LiveUserDetectors,
                updates_broadcast,
            )

            updates = updates_broadcast(
                env,
                parts.rules,
                self.rules_updates,
                self.audit_log or _beside(self.rules_updates, ".audit.jsonl"),
                self.profiles_updates,
                _beside(self.profiles_updates, ".audit.jsonl"),
            )
            card_parts = card_parts.connect(updates)
            card_function = LiveCardDetectors(parts, keys, wanted)
            user_function = LiveUserDetectors(parts, wanted)
        cards = (
            card_parts.process(card_function, output_type=PICKLED)
            .name("card detectors")
            .uid("fraudstream-card-detectors")
        )
        if live_updates:
            cards = self._side_outputs(cards, "card")
        answers = cards
        for hop in Routes(parts).hops[:-1]:  # terminal features, aggregate windows: in order
            function: Any
            if hop == "terminal":  # the terminals' features, by merchant key group
                function, name, uid = TerminalFeatures(parts, keys), "terminal features", hop
            else:  # the `when:` rules' aggregates by one key, by that key's key group
                function = AggregateWindows(parts, hop, keys)
                name, uid = f"aggregates {hop}", window_state(hop)
            answers = (
                answers.key_by(lambda v: v[0], key_type=Types.INT())
                .process(function, output_type=PICKLED)
                .name(name)
                .uid(f"fraudstream-{uid}")
            )
        user_parts: Any = answers.key_by(lambda v: v[0], key_type=Types.INT())
        if live_updates:
            user_parts = user_parts.connect(updates)
        users = (
            user_parts.process(user_function, output_type=PICKLED)
            .name("user detectors, decide")
            .uid("fraudstream-user-detectors")
        )
        if live_updates:
            users = self._side_outputs(users, "user")
        origin = {"dead_letters": (decoded, cards), "late": (decoded,)}
        for name, target in self.outputs.items():
            streams = origin.get(name, (users,))
            tagged = [stream.get_side_output(OUTPUT_TAGS[name]) for stream in streams]
            joined = tagged[0] if len(tagged) == 1 else tagged[0].union(*tagged[1:])
            self._sink(joined, name, target)
        self._add_hooks(users)

    @staticmethod
    def _side_outputs(stream: Any, key: str) -> Any:
        """A broadcast-connected operator's side outputs, put back where sinks read them."""
        from fraudstream.flink.functions import PICKLED
        from fraudstream.flink.rules_broadcast import SideOutputs

        return (
            stream.process(SideOutputs(), output_type=PICKLED)
            .name(f"{key} side outputs")
            .uid(f"fraudstream-{key}-side-outputs")
        )

    def _build_fused(self, descriptors: Any, plan: list[Any]) -> None:
        from pyflink.common import Types

        from fraudstream.flink.functions import OUTPUT_TAGS, PICKLED
        from fraudstream.flink.fused import WholePipelineFunction

        function = WholePipelineFunction(
            self.parts, self.wanted, plan, fault=self.fault,
            hold_ms=self.checkpoint_interval_ms // 2,
        )  # fmt: skip
        decided = (
            descriptors.key_by(lambda _: 0, key_type=Types.INT())
            .process(function, output_type=PICKLED)
            .name("decode, dedupe, event clock, detectors, decide")
            .uid("fraudstream-pipeline")
        )
        for name, target in self.outputs.items():
            self._sink(decided.get_side_output(OUTPUT_TAGS[name]), name, target)
        self._add_hooks(decided)

    def _source(self, env: Any) -> Any:
        from pyflink.common import Duration, WatermarkStrategy

        if self.kafka_servers:
            from pyflink.common.serialization import SimpleStringSchema
            from pyflink.datastream.connectors.kafka import (
                KafkaOffsetsInitializer,
                KafkaSource,
            )

            kafka = (
                KafkaSource.builder()
                .set_bootstrap_servers(self.kafka_servers)
                .set_topics(self.kafka_topic)
                .set_group_id("fraudstream-flink")
                .set_starting_offsets(KafkaOffsetsInitializer.earliest())
                .set_value_only_deserializer(SimpleStringSchema())
                .build()
            )
            stream = env.from_source(kafka, WatermarkStrategy.no_watermarks(), "kafka")
            return stream.uid("fraudstream-kafka-source")
        from pyflink.datastream.connectors.file_system import FileSource, StreamFormat

        builder = FileSource.for_record_stream_format(
            StreamFormat.text_line_format(), *[to_uri(path) for path in self.inputs]
        )
        if self.monitor_ms is not None:
            builder = builder.monitor_continuously(Duration.of_millis(self.monitor_ms))
        stream = env.from_source(builder.build(), WatermarkStrategy.no_watermarks(), "files")
        return stream.uid("fraudstream-file-source")

    def _sink(self, stream: Any, name: str, target: str) -> None:
        if self.kafka_servers and not target.startswith(("/", ".", "file:")):
            from pyflink.common.serialization import SimpleStringSchema
            from pyflink.datastream.connectors.base import DeliveryGuarantee
            from pyflink.datastream.connectors.kafka import (
                KafkaRecordSerializationSchema,
                KafkaSink,
            )

            sink = (
                KafkaSink.builder()
                .set_bootstrap_servers(self.kafka_servers)
                .set_record_serializer(
                    KafkaRecordSerializationSchema.builder()
                    .set_topic(target)
                    .set_value_serialization_schema(SimpleStringSchema())
                    .build()
                )
                .set_delivery_guarantee(DeliveryGuarantee.EXACTLY_ONCE)
                .set_transactional_id_prefix(f"fraudstream-{name}")
                .build()
            )
            stream.sink_to(sink).name(f"{name} -> kafka {target}").uid(f"fraudstream-{name}-kafka")
            return
        from fraudstream.flink.sinks import file_sink

        sink = file_sink(to_uri(target), prefix=name, suffix=".jsonl")
        stream.sink_to(sink).name(f"{name} -> {target}").uid(f"fraudstream-{name}-files")

    def run(self) -> Any:
        """Builds the graph and runs it to the end (a bounded input) or until cancelled;
        with ``detach``, submits it and returns its job id."""
        with ThreadPoolExecutor(1) as pool:
            if self.chunked:  # cutting the files reads them: meanwhile the JVM starts
                self._planned = pool.submit(self.plan)
            env = self.environment()
            self.build(env)
        if self.detach:
            return str(env.execute_async(JOB_NAME).get_job_id())
        return env.execute(JOB_NAME)

    def explain(self) -> str:
        """Flink's execution plan of this job as JSON (``get_execution_plan``), not run."""
        env = self.environment()
        self.build(env)
        return str(env.get_execution_plan())

    def plan(self) -> list[Any]:
        """The input files cut into chunks (:func:`.plan_chunks`; by :meth:`run` while the JVM
        starts)."""
        if self._planned is None:
            from fraudstream.flink.chunks import plan_chunks

            return plan_chunks(self.inputs, self.batch_bytes, count_lines=self.keyed)
        return list(self._planned.result())


def python_path() -> str:
    """sys.path for Flink's embedded interpreter: this venv's packages and fraudstream."""
    parts = [str(Path(__file__).resolve().parents[2]), *site.getsitepackages()]
    existing = os.environ.get("PYTHONPATH")
    if existing:
        parts.append(existing)
    return os.pathsep.join(dict.fromkeys(parts))


def _beside(directory: str | None, suffix: str) -> str | None:
    """A file next to a watched directory (its audit log)."""
    return None if directory is None else directory.rstrip("/") + suffix
