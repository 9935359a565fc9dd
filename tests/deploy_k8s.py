#!/usr/bin/python3
"""tests/deploy_k8s.py - the deployment files agree with the daemon (part of `make test`).

Parses deploy/kubernetes/*.yaml (Debian's python3-yaml) and docker/compose.yaml, reads
docker/Dockerfile, and checks them against what build/convoyd really does:
  - every CONVOY_* variable is an option of `convoyd --print-config`, and the daemon accepts
    the manifest's values (run with that environment);
  - containerPort, the Service targetPort, the probes' ports, EXPOSE and the compose port are
    the port of CONVOY_LISTEN, which listens on all addresses;
  - probe paths and the image HEALTHCHECK answer 200 on a real daemon started with the
    manifest's environment (loopback, free port), and SIGTERM (the signal Kubernetes and the
    image's STOPSIGNAL send) makes it exit 0;
  - CPU requests equal CONVOY_THREADS; the models volume is no ConfigMap and is mounted at
    CONVOY_MODELS; the grace period covers preStop + drain-ms + 1 s; selectors match;
    HPA (autoscaling/v2, CPU) and PDB target the Deployment; kustomization lists every file.
"""
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import yaml

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
os.chdir(ROOT)
BUILD = os.environ.get("CONVOY_BUILD", "build")
CONVOYD = os.path.join(BUILD, "convoyd")
K8S = "deploy/kubernetes"

failures = []


def check(what, ok, detail=""):
    print(("  ok   " if ok else "  FAIL ") + what + ("" if ok or not detail else ": " + str(detail)))
    if not ok:
        failures.append(what)
    return ok


def cpu_cores(q):
    q = str(q)
    return float(q[:-1]) / 1000 if q.endswith("m") else float(q)


def print_config(env):
    full = {k: v for k, v in os.environ.items() if not k.startswith("CONVOY_")}
    full.update(env)
    out = subprocess.run([CONVOYD, "--print-config"], env=full, capture_output=True, text=True,
                         timeout=30)
    return out.returncode, out.stdout, out.stderr


# ---- parse ---------------------------------------------------------------------------------
docs = {}
for path in sorted(glob.glob(K8S + "/*.yaml")):
    with open(path) as f:
        for d in yaml.safe_load_all(f):
            if d is None:
                continue
            check(f"{path}: {d.get('kind')} parses", isinstance(d, dict) and "kind" in d)
            docs.setdefault(d["kind"], []).append((path, d))

for kind, api in [("Deployment", "apps/v1"), ("Service", "v1"),
                  ("HorizontalPodAutoscaler", "autoscaling/v2"),
                  ("PodDisruptionBudget", "policy/v1"),
                  ("Kustomization", "kustomize.config.k8s.io/v1beta1")]:
    check(f"one {kind} ({api})", len(docs.get(kind, [])) == 1 and docs[kind][0][1]["apiVersion"] == api)
if failures:
    sys.exit(1)

dep = docs["Deployment"][0][1]
svc = docs["Service"][0][1]
hpa = docs["HorizontalPodAutoscaler"][0][1]
pdb = docs["PodDisruptionBudget"][0][1]
kus = docs["Kustomization"][0][1]
pod = dep["spec"]["template"]["spec"]
ctr = next(c for c in pod["containers"] if c["name"] == "convoyd")
env = {e["name"]: str(e["value"]) for e in ctr.get("env", [])}

# ---- environment vs --print-config ---------------------------------------------------------
rc, out, err = print_config({})
check("convoyd --print-config runs", rc == 0, err)
options = json.loads(out)
for name in env:
    if name.startswith("CONVOY_"):
        key = name[len("CONVOY_"):].lower().replace("_", "-")
        check(f"{name} is the option '{key}'", key in options, sorted(options))
rc, out, err = print_config({k: v for k, v in env.items() if k.startswith("CONVOY_")})
check("convoyd accepts the manifest's environment", rc == 0, err.strip())
cfg = json.loads(out) if rc == 0 else options
host, _, port = cfg["listen"].rpartition(":")
port = int(port)
check(f"listens on all addresses ({cfg['listen']})", host in ("0.0.0.0", "::", "[::]"))
check("OPENBLAS_CORETYPE=Haswell", env.get("OPENBLAS_CORETYPE") == "Haswell")

# ---- ports ---------------------------------------------------------------------------------
ports = {p.get("name"): p["containerPort"] for p in ctr["ports"]}
check(f"containerPort {list(ports.values())} == listen port {port}", list(ports.values()) == [port])


def resolve(p):
    return ports.get(p, p) if isinstance(p, str) else p


for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
    if probe in ctr:
        check(f"{probe} port -> {port}", resolve(ctr[probe]["httpGet"]["port"]) == port)
check("readinessProbe is /readyz", ctr["readinessProbe"]["httpGet"]["path"] == "/readyz")
check("livenessProbe is /healthz", ctr["livenessProbe"]["httpGet"]["path"] == "/healthz")
check("Service targetPort -> listen port",
      all(resolve(p["targetPort"]) == port for p in svc["spec"]["ports"]))
labels = dep["spec"]["template"]["metadata"]["labels"]
sel = dep["spec"]["selector"]["matchLabels"]
check("Deployment selector matches its pods", all(labels.get(k) == v for k, v in sel.items()))
check("Service selector matches the pods",
      all(labels.get(k) == v for k, v in svc["spec"]["selector"].items()))
check("PDB selector matches the pods",
      all(labels.get(k) == v for k, v in pdb["spec"]["selector"]["matchLabels"].items()))

# ---- CPU, volume, shutdown -----------------------------------------------------------------
req = ctr["resources"]["requests"]["cpu"]
check(f"CPU request {req} == CONVOY_THREADS {cfg['threads']}",
      cfg["threads"] > 0 and cpu_cores(req) == cfg["threads"])
vols = {v["name"]: v for v in pod["volumes"]}
mounts = {m["mountPath"]: m["name"] for m in ctr["volumeMounts"]}
mv = mounts.get(cfg["models"])
check(f"a volume is mounted at the models directory {cfg['models']}", mv in vols)
if mv in vols:
    check("the models volume is no ConfigMap", "configMap" not in vols[mv])
    check("the models volume is an emptyDir or a PVC",
          "emptyDir" in vols[mv] or "persistentVolumeClaim" in vols[mv])
    if "emptyDir" in vols[mv]:
        check("an init container fills the emptyDir",
              any(m["name"] == mv for ic in pod.get("initContainers", [])
                  for m in ic.get("volumeMounts", [])))
pre = ctr["lifecycle"]["preStop"]
sleep_s = 0
if "exec" in pre:
    cmd = pre["exec"]["command"]
    check("preStop sleeps (lets the endpoints update) and leaves SIGTERM to Kubernetes",
          cmd[0] == "sleep" and len(cmd) == 2 and "kill" not in " ".join(cmd))
    sleep_s = float(cmd[1])
elif "sleep" in pre:
    sleep_s = float(pre["sleep"]["seconds"])
grace = pod["terminationGracePeriodSeconds"]
need = sleep_s + cfg["drain-ms"] / 1000 + 1
check(f"terminationGracePeriodSeconds {grace} > preStop {sleep_s} + drain {cfg['drain-ms']} ms + 1 s",
      grace > need)

# ---- HPA, PDB, kustomization ---------------------------------------------------------------
ref = hpa["spec"]["scaleTargetRef"]
check("HPA targets the Deployment",
      ref["kind"] == "Deployment" and ref["name"] == dep["metadata"]["name"])
check("HPA scales on CPU utilization",
      any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in hpa["spec"]["metrics"]))
check("HPA minReplicas >= 2 (the PDB can then allow a disruption)", hpa["spec"]["minReplicas"] >= 2)
files = sorted(os.path.basename(p) for p in glob.glob(K8S + "/*.yaml")
               if not p.endswith("kustomization.yaml"))
check("kustomization lists every manifest", sorted(kus["resources"]) == files, kus["resources"])

# ---- Dockerfile and compose ----------------------------------------------------------------
with open("docker/Dockerfile") as f:
    dockerfile = f.read()
m = re.search(r"^EXPOSE\s+(\d+)", dockerfile, re.M)
check("Dockerfile EXPOSE == listen port", m is not None and int(m.group(1)) == port)
m = re.search(r"CONVOY_LISTEN=(\S+)", dockerfile)
check("Dockerfile CONVOY_LISTEN == the manifest's", m is not None and m.group(1) == env["CONVOY_LISTEN"])
check("Dockerfile STOPSIGNAL SIGTERM", re.search(r"^STOPSIGNAL\s+SIGTERM\s*$", dockerfile, re.M) is not None)
check("Dockerfile HEALTHCHECK on /healthz", re.search(r"^HEALTHCHECK .*\n?.*GET /healthz", dockerfile, re.M) is not None)
m = re.search(r"^USER\s+(\d+)", dockerfile, re.M)
check("Dockerfile USER == runAsUser", m is not None and int(m.group(1)) == pod["securityContext"]["runAsUser"])
m = re.search(r"CONVOY_DRAIN_MS=(\d+)", dockerfile)
check("image drain-ms + 1 s fits Docker's default 10 s stop timeout", m is not None and int(m.group(1)) + 1000 < 10000)
check("Dockerfile has a volume at the models directory",
      re.search(r'^VOLUME\s+\[?"?%s"?\]?' % re.escape(cfg["models"]), dockerfile, re.M) is not None)
with open("docker/compose.yaml") as f:
    compose = yaml.safe_load(f)
sv = compose["services"]["convoyd"]
check("compose publishes the listen port", any(str(p).endswith(":%d" % port) for p in sv["ports"]))
check("compose mounts the models directory", any(str(v).split(":")[1] == cfg["models"] for v in sv["volumes"]))
g = sv.get("stop_grace_period", "10s")
check("compose stop_grace_period covers drain", float(g.rstrip("s")) * 1000 > int(
    re.search(r"CONVOY_DRAIN_MS=(\d+)", dockerfile).group(1)) + 1000)

# ---- the real daemon: probe paths, the image health check, SIGTERM ------------------------
tmp = tempfile.mkdtemp(prefix="convoy-k8s-")
os.symlink(os.path.abspath("models/fashion-mnist.cvy"), os.path.join(tmp, "fashion-mnist.cvy"))
log = open(os.path.join(tmp, "log"), "w+")
denv = {k: v for k, v in os.environ.items() if not k.startswith("CONVOY_")}
denv.update(env)
# Same environment, but loopback on a free port and the temporary model directory (CLI > env).
proc = subprocess.Popen([CONVOYD, "--listen", "127.0.0.1:0", "--models", tmp, "--threads", "1"],
                        env=denv, stderr=log)
try:
    lport = None
    t0 = time.time()
    while time.time() - t0 < 20 and lport is None:
        log.seek(0)
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", log.read())
        lport = int(m.group(1)) if m else None
        time.sleep(0.05)
    check("daemon started", lport is not None)

    def get(path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{lport}{path}", timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return None

    if lport:
        while time.time() - t0 < 20 and get("/readyz") != 200:
            time.sleep(0.05)
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if probe in ctr:
                path = ctr[probe]["httpGet"]["path"]
                check(f"{probe} {path} answers 200", get(path) == 200)
        # The image's HEALTHCHECK command, run here against the daemon's port.
        joined = dockerfile.replace("\\\n", " ")  # continuation lines
        hc = re.search(r'^HEALTHCHECK .*?CMD (\[.*\])\s*$', joined, re.M)
        if hc and shutil.which("bash"):
            argv = json.loads(hc.group(1))
            r = subprocess.run(argv, env=dict(os.environ, CONVOY_LISTEN=f"127.0.0.1:{lport}"),
                               timeout=10)
            check("the image HEALTHCHECK command passes", r.returncode == 0)
        else:
            check("the image HEALTHCHECK command parses", False)
        check("an unknown path is 404 (the probe check is meaningful)", get("/no-such-probe") == 404)
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=cfg["drain-ms"] / 1000 + 5)
    except subprocess.TimeoutExpired:
        rc = None
    check("SIGTERM: exit 0 within drain-ms", rc == 0, rc)
finally:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    log.close()
    shutil.rmtree(tmp, ignore_errors=True)

if failures:
    print(f"deploy_k8s: {len(failures)} check(s) failed")
    sys.exit(1)
print("deploy_k8s: all checks passed")
