"""`spec schema | check FILE... | show NAME`: the spec's JSON Schema, a dry check, a spec with its defaults.

None of them writes anything, takes a lock or reaches AWS.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from pipeline import allocation, fleet, spec, spec_source
from pipeline.config import Settings
from pipeline.errors import EXIT_OK, SpecError
from pipeline.report import Outcome, Reporter


def schema_text() -> str:
    """The schema as `spec schema` prints it and `schemas/cluster-spec.schema.json` holds it."""
    return json.dumps(spec.json_schema(), indent=2, ensure_ascii=False) + "\n"


def schema(reporter: Reporter) -> int:
    reporter.finish(Outcome(tuple(schema_text().splitlines()), spec.json_schema()))
    return EXIT_OK


def check(files: list[Path], reporter: Reporter) -> int:
    """Each file parsed as new-cluster would parse it; the first bad one ends the check, named."""
    checked = []
    for path in files:
        source = spec_source.load(path.stem, path)
        # A file without a name is the cluster its file name names, as in clusters/NAME.yaml.
        named = source.data.get("name")
        try:
            cluster = spec.parse(source, named if isinstance(named, str) else path.stem)
        except SpecError as exc:
            raise exc.in_file(str(path)) from None
        checked.append({"file": str(path), "cluster": cluster.name})
    lines = tuple(f"{c['file']}: cluster {c['cluster']}, valid" for c in checked)
    reporter.finish(Outcome(lines, {"valid": checked}))
    return EXIT_OK


def show(name: str, spec_path: Path | None, settings: Settings, reporter: Reporter) -> int:
    """The spec the pipeline would act on: every default filled in, the VPC CIDR the fleet would give it."""
    source = spec_source.load(name, spec_path)
    parsed = spec.parse(source, name)
    with fleet.reading(settings) as checkout, source.pointing():
        cluster = allocation.place(parsed, allocation.known_in(checkout, name))
    data = cluster.model_dump(mode="json", by_alias=True)
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    heading = f"# {cluster.name} as new-cluster would act on it: every default filled in, the VPC CIDR placed"
    reporter.finish(Outcome((heading, *text.splitlines()), data))
    return EXIT_OK
