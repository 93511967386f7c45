"""Loading configuration files: libyaml's safe loader when PyYAML has it, the same documents
as the pure-Python one; Parquet and CSV profiles as the fast forms, with one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.config import YAML_LOADER, ConfigError, load_document, load_rows, load_yaml
from fraudstream.simulate.demo import demo_profiles, write_profiles

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63),
    st.floats(allow_nan=False),
    st.text(max_size=30),
)
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=30,
)


def test_the_c_loader_is_used_when_pyyaml_has_it() -> None:
    expected = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader
    assert YAML_LOADER is expected
    assert issubclass(YAML_LOADER, yaml.SafeLoader) or YAML_LOADER is yaml.CSafeLoader


@given(documents, st.sampled_from([None, False, True]), st.booleans())
@settings(max_examples=300, deadline=None)
def test_load_yaml_reads_what_the_safe_loader_reads(
    document: Any, flow: bool | None, unicode: bool
) -> None:
    text = yaml.safe_dump(document, default_flow_style=flow, allow_unicode=unicode)
    assert load_yaml(text) == yaml.load(text, Loader=yaml.SafeLoader)
    if not unicode:  # PyYAML's own emitter folds some line breaks (NEL) when writing them raw
        assert load_yaml(text) == document


def outcome(text: str, loader: type[yaml.SafeLoader]) -> Any:
    try:
        return ("ok", yaml.load(text, Loader=loader))
    except yaml.YAMLError:
        return ("error", None)


# Without "!": a bare "!" (a non-specific tag on an empty node) is "" for libyaml, None for
# the pure-Python loader, the one difference found on reads; no configuration writes it.
@given(st.text(alphabet=st.sampled_from(list("ab1.-:#[]{},'\"&*|> \n\t")), max_size=40))
@settings(max_examples=500, deadline=None)
def test_on_any_text_both_loaders_agree_where_both_read_it(text: str) -> None:
    # libyaml is laxer on a few malformed inputs (a trailing tab), never different on a read.
    fast, plain = outcome(text, YAML_LOADER), outcome(text, yaml.SafeLoader)
    if fast[0] == plain[0] == "ok":
        assert fast == plain


def test_unsafe_tags_are_refused_and_named(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match=r"rules\.yaml:1:\d+: not valid YAML") as info:
        load_document(path)
    assert "\n" not in str(info.value)


def test_profiles_round_trip_through_parquet(tmp_path: Path) -> None:
    profiles = demo_profiles(users=20)
    rows = load_rows(write_profiles(tmp_path / "profiles.parquet", profiles), "profiles")
    assert rows == [{k: (float(v) if isinstance(v, int) else v) for k, v in p.items()}
                    for p in profiles]  # fmt: skip


@pytest.mark.parametrize("content", [b"", b"PAR1 not really", b"user_id\nu1\n"])
def test_a_bad_parquet_file_is_one_line(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "profiles.parquet"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=r"profiles\.parquet: not valid Parquet") as info:
        load_rows(path, "profiles")
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="cannot read"):
        load_rows(tmp_path / "missing.parquet", "profiles")
