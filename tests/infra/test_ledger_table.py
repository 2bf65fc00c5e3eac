"""The ledger table in the template has the key and the indexes that
the ledger adapter (src/aws/ledger/) reads and queries, and keeps its data.
Two kinds of index: the lookups of INDEXES (a partition key alone, whole
records projected), and the expiry index byMirrorEnd (a partition and a sort
key, keys only: the expiry run reads each record again before acting)."""

import re

import pytest

import os

from infra_support import ROOT, load_template, read, rust_str_const, without_comments

LEDGER = "src/aws/ledger/"


@pytest.fixture(scope="module")
def table():
    return load_template()["Resources"]["LedgerTable"]


@pytest.fixture(scope="module")
def code():
    """Every file of the ledger adapter, without their unit tests."""
    names = sorted(n for n in os.listdir(os.path.join(ROOT, LEDGER)) if n.endswith(".rs"))
    assert "mod.rs" in names, f"no {LEDGER}mod.rs"
    return "\n".join(without_comments(read(LEDGER + name)).split("#[cfg(test)]", 1)[0] for name in names)


def index_consts(code):
    """{const name: (index name, key attribute)} of `const X: (&str, &str) = ("a", "b");`."""
    pairs = re.findall(
        r"\bconst\s+(\w+)\s*:\s*\(&str,\s*&str\)\s*=\s*\(\s*\"([^\"]+)\"\s*,\s*\"([^\"]+)\"\s*\)", code
    )
    return {name: (index, attribute) for name, index, attribute in pairs}


def code_indexes(code):
    """The `INDEXES` list: every (index name, partition key attribute) the code queries."""
    match = re.search(r"\bconst\s+INDEXES\s*:[^=]*=\s*\[(.*?)\];", code, re.S)
    assert match, f"no `const INDEXES` in {LEDGER}"
    consts = index_consts(code)
    indexes = {}
    body = match.group(1)
    for index, attribute in re.findall(r"\(\s*\"([^\"]+)\"\s*,\s*\"([^\"]+)\"\s*\)", body):
        indexes[index] = attribute
    for name in re.findall(r"\b([A-Z][A-Z0-9_]+)\b", body):
        assert name in consts, f"INDEXES names {name}, which is not a (&str, &str) const in {LEDGER}"
        index, attribute = consts[name]
        indexes[index] = attribute
    assert indexes, f"INDEXES in {LEDGER} is empty"
    return indexes


# The expiry index: its name and its partition and sort key attributes, as
# src/aws/ledger/mod.rs names them.
EXPIRY_INDEX = ("INDEX_BY_MIRROR_END", "MIRROR_ENDING", "MIRROR_ENDS_AT")


def code_ranged_indexes(code):
    """{index name: (partition key attribute, sort key attribute)} of the
    indexes queried by a range (the expiry index)."""
    index, partition, sort = (rust_str_const(code, name) for name in EXPIRY_INDEX)
    return {index: (partition, sort)}


def written_type(code, const):
    """"S" or "N": how the codec writes the attribute `const` names
    (`item.insert(CONST.into(), s(...))` or `n(...)`)."""
    kinds = set(re.findall(r"\binsert\(\s*" + const + r"\.into\(\)\s*,\s*([sn])\(", code))
    assert len(kinds) == 1, f"the parser finds {const} written as {sorted(kinds) or 'nothing'} in {LEDGER}"
    return kinds.pop().upper()


def key_schema(schema):
    return {k["KeyType"]: k["AttributeName"] for k in schema}


def test_the_table_key_is_the_ledgers_partition_key(table, code):
    partition_key = rust_str_const(code, "PARTITION_KEY")
    expected = {"HASH": partition_key}
    # A sort key, if the code ever gets one, must be declared the same way.
    if re.search(r"\bconst\s+SORT_KEY\s*:", code):
        expected["RANGE"] = rust_str_const(code, "SORT_KEY")
    assert key_schema(table["Properties"]["KeySchema"]) == expected


def test_every_index_the_code_queries_is_in_the_template_and_no_other(table, code):
    wanted = {name: {"HASH": attribute} for name, attribute in code_indexes(code).items()}
    ranged = code_ranged_indexes(code)
    assert not set(ranged) & set(wanted), f"{sorted(set(ranged) & set(wanted))} is both a lookup and the expiry index"
    wanted.update({name: {"HASH": partition, "RANGE": sort} for name, (partition, sort) in ranged.items()})
    declared = {
        index["IndexName"]: key_schema(index["KeySchema"])
        for index in table["Properties"].get("GlobalSecondaryIndexes", [])
    }
    missing = sorted(set(wanted) - set(declared))
    extra = sorted(set(declared) - set(wanted))
    assert not missing, f"{LEDGER} queries indexes the template lacks: {missing}"
    assert not extra, f"the template declares indexes {LEDGER} never queries: {extra}"
    for name, keys in wanted.items():
        assert declared[name] == keys, f"index {name}: the code queries it by {keys}, the template keys it {declared[name]}"


def test_every_index_constant_is_listed_in_indexes(code):
    """A query through an index constant left out of INDEXES would escape the
    comparison above."""
    listed = set(code_indexes(code))
    for name, (index, _) in index_consts(code).items():
        if name.startswith("INDEX_"):
            assert index in listed, f"{name} ({index}) is not in INDEXES"


def test_the_indexes_project_whole_records(table, code):
    """find() rebuilds whole records from the lookups' index items; the
    expiry run reads only action ids (the table's key) from its index, then
    each record again, consistently, from the table."""
    lookups, ranged = code_indexes(code), code_ranged_indexes(code)
    for index in table["Properties"]["GlobalSecondaryIndexes"]:
        name = index["IndexName"]
        if name in lookups:
            assert index["Projection"] == {"ProjectionType": "ALL"}, f"{name} must project ALL"
        else:
            assert name in ranged, name
            assert index["Projection"] == {"ProjectionType": "KEYS_ONLY"}, f"{name} needs the keys only"


def test_attribute_definitions_are_exactly_the_key_attributes_as_the_code_writes_them(table, code):
    definitions = {a["AttributeName"]: a["AttributeType"] for a in table["Properties"]["AttributeDefinitions"]}
    ranged = {attribute: const for const, attribute in zip(EXPIRY_INDEX[1:], next(iter(code_ranged_indexes(code).values())))}
    keys = {rust_str_const(code, "PARTITION_KEY")} | set(code_indexes(code).values()) | set(ranged)
    assert set(definitions) == keys, f"attribute definitions {sorted(definitions)} != key attributes {sorted(keys)}"
    # The code writes the table's and the lookups' keys with AttributeValue::S;
    # the expiry index's as its codec does (its end is a number of seconds,
    # so that "ending before now" is a numeric range).
    for attribute, kind in definitions.items():
        expected = written_type(code, ranged[attribute]) if attribute in ranged else "S"
        assert kind == expected, f"{attribute}: the template declares {kind}, the code writes {expected}"


def test_the_table_keeps_its_data(table):
    properties = table["Properties"]
    assert table["DeletionPolicy"] == "Retain" and table["UpdateReplacePolicy"] == "Retain"
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["SSESpecification"]["SSEEnabled"] is True


def test_finished_records_expire_through_the_tables_ttl(table, code):
    """Finished records carry expiresAt (epoch seconds) and DynamoDB deletes
    them after it; the table's TTL must name the attribute the code writes,
    or nothing ever expires."""
    ttl = table["Properties"].get("TimeToLiveSpecification")
    assert ttl, "LedgerTable has no TimeToLiveSpecification: the ledger grows forever"
    assert ttl.get("Enabled") is True, "LedgerTable's TTL is not enabled"
    attribute = rust_str_const(code, "TTL_ATTRIBUTE")
    assert ttl.get("AttributeName") == attribute, (
        f"LedgerTable's TTL reads {ttl.get('AttributeName')!r}; {LEDGER} writes the expiry to {attribute!r}"
    )
    keys = {rust_str_const(code, "PARTITION_KEY")} | set(code_indexes(code).values())
    keys |= {a for pair in code_ranged_indexes(code).values() for a in pair}
    assert attribute not in keys, f"{attribute} is a key attribute: every record would expire"


def test_the_table_definition_stays_plain_yaml(table):
    """tests/support builds the emulator's table from these properties with a
    plain YAML reader: no intrinsic functions in them."""
    def plain(value):
        if isinstance(value, dict):
            return not any(k == "Ref" or k.startswith("Fn::") for k in value) and all(map(plain, value.values()))
        if isinstance(value, list):
            return all(map(plain, value))
        return True

    properties = table["Properties"]
    for name in ("BillingMode", "KeySchema", "AttributeDefinitions", "GlobalSecondaryIndexes"):
        assert plain(properties[name]), f"LedgerTable {name} must not use intrinsic functions"
