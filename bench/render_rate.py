"""Render plus full validation of distinct clusters, in one process, with the schemas loaded once."""

from __future__ import annotations

import ipaddress
import os
import time
from pathlib import Path

from pipeline import render, schemas, spec, spec_source, validate
from pipeline.config import load_settings
from pipeline.fleet import LOCAL_MANAGEMENT_CIDRS as MANAGEMENT_CIDRS
from pipeline.model import Manifests, NetworkOutputs, Subnet

ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")
# Distinct clusters get distinct /20s of this block, clear of the fleet pool's default /16s from 10.20.0.0.
BENCH_POOL = ipaddress.ip_network("10.64.0.0/10")


def cidr(index: int) -> str:
    return str(list(BENCH_POOL.subnets(new_prefix=20))[index])


def outputs(name: str, block: str) -> NetworkOutputs:
    """The outputs a three-zone network in `block` would have: what render reads."""
    blocks = list(ipaddress.ip_network(block).subnets(new_prefix=24))
    subnets = tuple(
        Subnet(
            id=f"subnet-{name}-{'pub' if public else 'prv'}{i}",
            cidr=str(blocks[i + 3 * public]),
            zone=zone,
            public=public,
        )
        for public in (False, True)
        for i, zone in enumerate(ZONES)
    )
    return NetworkOutputs(
        "us-east-1",
        f"vpc-{name}",
        block,
        subnets,
        (f"nat-{name}",),
        (("s3", f"vpce-{name}"),),
        None,
        f"arn:aws:kms:us-east-1:123456789012:key/{name}",
        f"/fleet-pipeline/{name}/kube-apiserver-audit",
    )


def cluster(index: int, replicas: int = 3) -> Manifests:
    """Distinct cluster number `index`: its own name, CIDR, and network."""
    name = f"fleet-{index:04d}"
    text = (
        spec_source.default_spec_yaml(name)
        .replace("zones: 2", "zones: 3")
        .replace("replicas: 2", f"replicas: {replicas}")
    )
    parsed = spec.parse(spec_source.read(text, "(bench)"), name)
    block = cidr(index)
    placed = parsed.model_copy(update={"network": parsed.network.model_copy(update={"cidr": block})})
    return render.render(
        placed, outputs(name, block), Path(render.__file__).resolve().parent.parent / "templates", MANAGEMENT_CIDRS
    )


def clusters_per_second(count: int) -> float:
    settings = load_settings(os.environ, Path.cwd())
    loaded = schemas.load(settings)
    started = time.perf_counter()
    rendered = [cluster(i) for i in range(count)]
    findings, _ = validate.validate_each(rendered, loaded, ())
    elapsed = time.perf_counter() - started
    if findings:
        raise RuntimeError(f"the bench's own clusters do not validate: {findings[:3]}")
    return count / elapsed
