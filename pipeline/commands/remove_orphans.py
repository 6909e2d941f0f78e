"""`remove-orphans NAME`: delete what AWS holds tagged for a cluster that its Terraform state does not track.

An apply killed before it saved its state leaves such resources; new-cluster refuses to build
beside them and names this command.
"""

from __future__ import annotations

from pipeline import access, journal, network, spec
from pipeline.config import Settings
from pipeline.errors import EXIT_OK, BadInput
from pipeline.report import Outcome, Reporter


def run(name: str, settings: Settings, reporter: Reporter) -> int:
    spec.check_name(name)
    region = network.recorded_region(settings, name)
    if region is None:
        raise BadInput(
            f"cluster '{name}' has no Terraform run on this machine ({settings.terraform_work_dir(name)} is empty); "
            "run remove-orphans where new-cluster ran"
        )
    with journal.run(settings.journal_dir, name, "remove-orphans") as record:
        with reporter.stage("remove-orphans"):
            removed = network.remove_orphans(
                name, region, access.for_target(settings, region), settings, reporter.tool_line
            )
            reporter.info(f"removed {removed}" if removed else "nothing tagged for the cluster is outside its state")
        record.finish("succeeded", removed={kind: list(ids) for kind, ids in removed.resources if ids})
    next_step = f"python -m pipeline new-cluster {name}"
    lines = (f"removed {removed}" if removed else "no orphans", f"next: {next_step}")
    data = {"cluster": name, "removed": {kind: list(ids) for kind, ids in removed.resources if ids}, "next": next_step}
    reporter.finish(Outcome(lines, data))
    return EXIT_OK
