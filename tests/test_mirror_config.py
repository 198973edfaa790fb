"""xata2convex.toml: read, checked against the schema, carried into the generated module."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.fixtures.xata import XataStandInFactory
from tests.test_schemagen import schema
from xata2convex.cli import main
from xata2convex.convex_json import Int64
from xata2convex.mirror import MirrorPlan, MirrorSchemaError, to_convex_document
from xata2convex.mirror_config import (
    MirrorConfig,
    MirrorConfigError,
    TableConfig,
    load_mirror_config,
    parse_mirror_config,
)
from xata2convex.model import RecordError
from xata2convex.schemagen import generate_convex_module

EXPERTS = "event-subject-matter-experts"
CONFIG = f"""
[mirror]
table_prefix = "xata_"
[tables."{EXPERTS}"]
search = ["bio", "full-name"]
int64 = ["years-active"]
"""


def test_the_file_is_read_with_every_setting() -> None:
    config = parse_mirror_config(CONFIG, "cfg.toml")
    assert config == MirrorConfig(
        "xata_", {EXPERTS: TableConfig(search=("bio", "full-name"), int64=("years-active",))}, "cfg.toml"
    )


def test_no_file_means_the_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_mirror_config() == MirrorConfig()
    (tmp_path / "xata2convex.toml").write_text('[mirror]\ntable_prefix = "x_"\n')
    assert load_mirror_config().table_prefix == "x_"
    with pytest.raises(MirrorConfigError, match=r"missing\.toml: cannot be read"):
        load_mirror_config(tmp_path / "missing.toml")


BAD_FILES = {
    "not toml": ("[mirror\n", "cfg.toml: not valid TOML"),
    "unknown section": ("[mirorr]\n", "cfg.toml: unknown setting 'mirorr'"),
    "unknown key": ('[mirror]\nprefix = "x"\n', "cfg.toml: [mirror]: unknown setting 'prefix'"),
    "bad prefix": ('[mirror]\ntable_prefix = "1x"\n', "table_prefix = '1x': it must be empty or a letter"),
    "prefix not a string": ("[mirror]\ntable_prefix = 3\n", "table_prefix = 3"),
    "unknown table key": (
        '[tables."users"]\nsearh = ["a"]\n',
        "cfg.toml: [tables.\"users\"]: unknown setting 'searh'",
    ),
    "not a list": ('[tables."users"]\nsearch = "name"\n', "search must be a list of column names"),
    "twice": ('[tables."users"]\nint64 = ["a", "a"]\n', "int64 lists a column twice"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_a_malformed_file_is_one_error_naming_the_file_and_setting(case: str) -> None:
    text, message = BAD_FILES[case]
    with pytest.raises(MirrorConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        parse_mirror_config(text, "cfg.toml")


SCHEMA_MISMATCHES = {
    "unknown table": ('[tables."nope"]\nsearch = ["a"]\n', "[tables.\"nope\"]: no Xata table 'nope'"),
    "unknown column": (
        f'[tables."{EXPERTS}"]\nsearch = ["nope"]\n',
        f"search: table '{EXPERTS}' has no column 'nope'",
    ),
    "search on an int": (
        f'[tables."{EXPERTS}"]\nsearch = ["years-active"]\n',
        "search: column 'years-active' of table 'event-subject-matter-experts' is int; a search index "
        "needs a string, text or email column",
    ),
    "int64 on a float": (
        f'[tables."{EXPERTS}"]\nint64 = ["rating"]\n',
        "int64: column 'rating' of table 'event-subject-matter-experts' is float; int64 applies to int",
    ),
    "too many search indexes": (
        f'[tables."sessions"]\nsearch = ["title"]\n[tables."{EXPERTS}"]\n'
        'search = ["full-name", "email", "bio", "topics"]\n',
        "is multiple",
    ),
}


@pytest.mark.parametrize("case", SCHEMA_MISMATCHES)
def test_settings_that_do_not_fit_the_schema_name_file_table_and_column(case: str) -> None:
    text, message = SCHEMA_MISMATCHES[case]
    with pytest.raises(MirrorConfigError) as error:
        generate_convex_module(schema(), parse_mirror_config(text, "cfg.toml"))
    assert str(error.value).startswith("cfg.toml: ") and message in str(error.value)


def test_more_indexes_than_convex_allows_are_refused() -> None:
    columns = [{"name": f"s{i}", "type": "string"} for i in range(5)]
    raw = {"tables": [{"name": "wide", "columns": columns}]}
    config = parse_mirror_config('[tables."wide"]\nsearch = ["s0", "s1", "s2", "s3", "s4"]\n', "cfg.toml")
    with pytest.raises(
        MirrorConfigError, match=r"cfg\.toml: table 'wide': search lists 5 columns; Convex allows 4"
    ):
        generate_convex_module(schema(raw), config)
    # 32 indexes per table in all: by_xata_id plus one per link.
    links = [{"name": f"l{i}", "type": "link", "link": {"table": "wide"}} for i in range(31)]
    generate_convex_module(schema({"tables": [{"name": "wide", "columns": links}]}))
    links.append({"name": "l31", "type": "link", "link": {"table": "wide"}})
    with pytest.raises(
        MirrorSchemaError, match=r"table 'wide' would have 33 indexes .* Convex allows 32 per table"
    ):
        generate_convex_module(schema({"tables": [{"name": "wide", "columns": links}]}))


def test_the_generated_module_carries_prefix_int64_search_and_links() -> None:
    module = generate_convex_module(schema(), parse_mirror_config(CONFIG, "cfg.toml"))
    assert 'export const xataTablePrefix = "xata_";\n' in module
    assert "  xata_event_subject_matter_experts: defineTable({\n" in module
    assert "  xata_sessions: defineTable({\n" in module
    assert "    years_active: v.optional(v.int64()),\n" in module
    assert 'years_active: { xata: "years-active", type: "int", int64: true },' in module
    assert (
        'expert: { xata: "expert", type: "link", link: { table: "xata_event_subject_matter_experts", '
        'idField: "expert_id", index: "by_expert_id" } },'
    ) in module
    assert '    expert_id: v.optional(v.id("xata_event_subject_matter_experts")),\n' in module
    assert (
        '    .searchIndex("search_full_name", { searchField: "full_name" })\n'
        '    .searchIndex("search_bio", { searchField: "bio" }),\n'
    ) in module
    assert '.index("by_expert_id", ["expert_id", "expert"])' in module
    assert "syncRuns" not in module


def test_a_prefix_never_makes_a_reserved_or_overlong_name() -> None:
    raw = {"tables": [{"name": "Runs", "columns": []}, {"name": "t" * 64, "columns": []}]}
    plan = MirrorPlan.from_schema(schema(raw), MirrorConfig("sync"))
    names = [table.convex_name for table in plan.tables]
    assert names[0] == "t_syncRuns" and len(names[1]) == 64 and names[1].startswith("synct")


def test_link_id_fields_that_collide_are_an_error_naming_both() -> None:
    raw = {
        "tables": [
            {
                "name": "t",
                "columns": [
                    {"name": "owner", "type": "link", "link": {"table": "t"}},
                    {"name": "owner_id", "type": "string"},
                ],
            }
        ]
    }
    with pytest.raises(
        MirrorSchemaError, match="'owner' and 'owner_id' both map to the Convex name 'owner_id'"
    ):
        MirrorPlan.from_schema(schema(raw))


def test_an_int_beyond_2_53_names_the_config_line_that_fixes_it_and_int64_holds_it() -> None:
    record = {"id": "rec_1", "full-name": "A", "available": True, "years-active": 2**53 + 1}
    plain = MirrorPlan.from_schema(schema()).table(EXPERTS)
    with pytest.raises(RecordError) as error:
        to_convex_document(plain, record)
    assert (
        f'add int64 = ["years-active"] under [tables."{EXPERTS}"] in xata2convex.toml, then run '
        "`xata2convex schema` and deploy"
    ) in str(error.value)
    config = parse_mirror_config(CONFIG)
    int64 = MirrorPlan.from_schema(schema(), config).table(EXPERTS)
    for value in (2**63 - 1, -(2**63 - 1), 2**53 + 1, 7):
        assert to_convex_document(int64, {**record, "years-active": value})["years_active"] == Int64(value)
    with pytest.raises(RecordError, match="outside the int64 range"):
        to_convex_document(int64, {**record, "years-active": 2**63})


def test_the_deployed_module_gives_back_the_settings_the_sync_needs() -> None:
    info = {
        "hash": "h",
        "tablePrefix": "xata_",
        "tables": {
            "xata_t": {"xata": "t-1", "fields": {"n": {"xata": "n-1", "type": "int", "int64": True}}},
            "xata_u": {"xata": "u", "fields": {"m": {"xata": "m", "type": "int"}}},
        },
    }
    assert MirrorConfig.from_schema_info(info) == MirrorConfig(
        "xata_", {"t-1": TableConfig(int64=("n-1",))}, "the deployed mirror"
    )
    assert MirrorConfig.from_schema_info({"hash": "h", "tables": {}}) == MirrorConfig(
        source="the deployed mirror"
    )


def test_schema_command_reads_the_config_file(xata_standin: XataStandInFactory, tmp_path: Path) -> None:
    env = xata_standin().settings()
    config = tmp_path / "mine.toml"
    out = tmp_path / "xataTables.ts"
    config.write_text('[tables."nope"]\nint64 = ["x"]\n')
    result = CliRunner().invoke(main, ["schema", "--config", str(config), "--out", str(out)], env=env)
    assert result.exit_code == 1 and not out.exists()
    assert f"{config}: [tables.\"nope\"]: no Xata table 'nope'" in result.output
    assert "Traceback" not in result.output
    config.write_text(
        '[mirror]\ntable_prefix = "xata_"\n[tables."users"]\nint64 = ["age"]\nsearch = ["bio"]\n'
    )
    result = CliRunner().invoke(main, ["schema", "--config", str(config), "--out", str(out)], env=env)
    assert result.exit_code == 0, result.output
    module = out.read_text()
    assert "    age: v.optional(v.int64()),\n" in module and '.searchIndex("search_bio"' in module
    assert '    team_id: v.optional(v.id("xata_teams")),\n' in module
