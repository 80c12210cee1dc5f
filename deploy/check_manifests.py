#!/usr/bin/env python3
"""Checks the deployment files without a Docker engine or a cluster.

- compose.yaml and deploy/kubernetes/*.yaml parse as YAML;
- every compose service has a healthcheck;
- the image tags (compose, Kubernetes, the Dockerfile's comment) are the
  version in Cargo.toml, and the Dockerfile builds with the toolchain that
  rust-toolchain.toml pins;
- the Deployment probes /ready and /health and runs as non-root with a
  read-only root filesystem;
- the ConfigMap carries exactly deploy/sluice.toml.

Exits non-zero with one line per problem.
"""

import pathlib
import re
import sys
import tomllib

import yaml

root = pathlib.Path(__file__).resolve().parent.parent
problems = []


def check(ok, message):
    if not ok:
        problems.append(message)


version = tomllib.loads((root / "Cargo.toml").read_text())["workspace"]["package"]["version"]
toolchain = tomllib.loads((root / "rust-toolchain.toml").read_text())["toolchain"]["channel"]

compose = yaml.safe_load((root / "compose.yaml").read_text())
services = compose.get("services", {})
check(services, "compose.yaml: no services")
for name, service in services.items():
    check("healthcheck" in service, f"compose.yaml: service `{name}` has no healthcheck")
sluice = services.get("sluice", {})
check(sluice.get("image") == f"sluice:{version}",
      f"compose.yaml: sluice image is {sluice.get('image')!r}, want sluice:{version}")
check(sluice.get("read_only") is True, "compose.yaml: sluice should run with read_only: true")

docs = []
for path in sorted((root / "deploy" / "kubernetes").glob("*.yaml")):
    docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
kinds = {d["kind"]: d for d in docs}
for kind in ["ConfigMap", "Deployment", "Service", "PodDisruptionBudget"]:
    check(kind in kinds, f"kubernetes: no {kind}")
if "Deployment" in kinds:
    spec = kinds["Deployment"]["spec"]["template"]["spec"]
    container = spec["containers"][0]
    check(container["image"].endswith(f":{version}"),
          f"kubernetes: image {container['image']!r} is not tagged {version}")
    check(container.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/ready",
          "kubernetes: readiness must probe /ready")
    check(container.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/health",
          "kubernetes: liveness must probe /health")
    check(container.get("securityContext", {}).get("readOnlyRootFilesystem") is True,
          "kubernetes: the root filesystem must be read-only")
    check(spec.get("securityContext", {}).get("runAsNonRoot") is True,
          "kubernetes: must run as non-root")
    check(spec.get("terminationGracePeriodSeconds", 30) >= 15,
          "kubernetes: terminationGracePeriodSeconds must cover the 10 s drain")
if "ConfigMap" in kinds:
    check(kinds["ConfigMap"]["data"].get("sluice.toml") == (root / "deploy" / "sluice.toml").read_text(),
          "kubernetes: the ConfigMap's sluice.toml differs from deploy/sluice.toml")

# The Grafana dashboard: it parses, and every metric it queries is one the
# README documents (so a renamed metric cannot leave a dead panel).
import json

readme = (root / "README.md").read_text()
dashboard = json.loads((root / "deploy" / "grafana" / "sluice.json").read_text())
for panel in dashboard["panels"]:
    for target in panel["targets"]:
        for name in re.findall(r"\b(sluice_[a-z_]+)", target["expr"]):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            check(base in readme, f"grafana: panel {panel['title']!r} queries {name}, which the README does not document")

dockerfile = (root / "Dockerfile").read_text()
froms = re.findall(r"^FROM\s+(\S+)", dockerfile, re.M)
check(froms and froms[0].startswith(f"rust:{toolchain}-"),
      f"Dockerfile: builds on {froms[:1]}, but rust-toolchain.toml pins {toolchain}")
check(re.search(r"^HEALTHCHECK .*?/health", dockerfile, re.M | re.S) is not None,
      "Dockerfile: no HEALTHCHECK on /health")
users = re.findall(r"^USER\s+(\S+)", dockerfile, re.M)
check(users and users[-1] not in ("root", "0"), "Dockerfile: the runtime stage must not run as root")
check(f"sluice:{version}" in dockerfile, f"Dockerfile: its usage comment should tag sluice:{version}")
check((root / ".dockerignore").exists(), "no .dockerignore")

for p in problems:
    print(p, file=sys.stderr)
if problems:
    sys.exit(1)
print(f"deployment files OK (version {version}, toolchain {toolchain}, {len(services)} compose services, {len(docs)} Kubernetes objects, {len(dashboard['panels'])} dashboard panels)")
