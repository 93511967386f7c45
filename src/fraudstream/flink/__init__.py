"""The PyFlink runtime: `fraudstream flink run` runs the embedded pipeline's code on Flink.

:mod:`.stages` cuts the pipeline into a sequencer, card / user detector shards and a decide
join; :mod:`.functions` wraps them as Flink operators with keyed state; :mod:`.job` builds
the job graph; :mod:`.chunks` reads bounded files in chunks; :mod:`.cli` is the command.
Only :mod:`.functions` and :mod:`.job` import pyflink (the ``flink`` extra).
"""

__all__: list[str] = []
