#!/usr/bin/env node
// policy.js - the deployment rules pmesh's manifests keep, checked on a
// rendered stream (kubectl kustomize output).
//
//   node tests/deploy/policy.js [--require-curve] [--extract DIR] FILE
//
// Every container of every workload: liveness and readiness probes,
// resource requests and limits, non-root, read-only root filesystem, no
// privilege escalation, all capabilities dropped, RuntimeDefault seccomp, a
// pinned image tag. Init containers: the same minus probes; one may run as
// root only to hand host directories over (capability CHOWN, nothing
// else). Pods: no service account token, no host namespaces, no
// hostPath but /run/pmesh and /var/lib/pmesh; a pod other than the agent
// that mounts /run/pmesh mounts it read-only and has the agent's group in
// supplementalGroups (else it cannot open the 0660 socket).
//
// The agent (DaemonSet pmesh-agent), when the stream has it: on every node
// (tolerates every taint, system-node-critical), one node at a time, a
// graceful stop, a startup probe with at least 60 s for WAL recovery,
// /healthz and /readyz probes, the downward-API env, user and group 10001.
// Its pmesh.yaml (from the ConfigMap mounted at the --config path) must
// agree with the manifests: the bind, advertise, containerPort, Service and
// NetworkPolicy ports; the seed is the headless Service (publishNotReady);
// data_dir and the socket are hostPaths; mesh_key_dir, token_secret_file
// and http_api_keys_file are Secret files no other user can read (without
// keys, insecure_http must say so); --require-curve: mesh_key_dir and
// http_api_keys_file are set and insecure and insecure_http are not. Two
// HTTP Services: the full API and the public (token-only) listener, named by
// http_public_url. The NetworkPolicy lets only agents reach the mesh port,
// only agents and pods labelled pmesh.io/client reach the full HTTP API, and
// everyone the public port; the ServiceAccount has no token and no bindings.
//
// etcd (StatefulSet pmesh-etcd), when the stream has it: an odd number of
// members, at least 3; persistent volumes (--data-dir on a
// volumeClaimTemplate); Parallel pod management (a static cluster cannot
// come up one ready pod at a time); the headless Service of serviceName
// (publishNotReady) and a static --initial-cluster naming every member by
// its stable DNS name under it; TLS on the client and peer URLs with
// --client-cert-auth and --peer-client-cert-auth, the CA, certificate and
// key files from the Secret pmesh-etcd-tls (ca.crt, server.crt, server.key;
// no one else can read them); probes on the plain-HTTP listener of
// --listen-metrics-urls (the client port admits no kubelet), liveness not
// needing quorum; a PodDisruptionBudget letting exactly as many go as
// quorum allows (at least one); a NetworkPolicy letting only the agents and
// the members reach the client port and only the members the peer port; a
// ClusterIP Service for the clients. An agent whose pmesh.yaml sets
// coordination: every endpoint that names a Service of its namespace names
// one in the render, on its port; coordination_ca_file, _cert_file and
// _key_file are Secret files no other user can read (all three, when the
// render's etcd wants client certificates).
//
// --extract DIR writes what `pmeshd --check` needs to check the agent as it
// would start: DIR/pmesh.yaml, DIR/args (one per line, $(VAR)s expanded,
// --config pointing at DIR/pmesh.yaml) and, if the config sets
// mesh_key_dir, DIR/curve.
//
// Prints "ok"/"not ok" per object; exits 1 if any rule is broken.
"use strict";

const fs = require("fs");
const path = require("path");
const { need, readDocs, readFileOrStdin, describe } = require("./k8s.js");

const YAML = need("yaml");

const AGENT = "pmesh-agent";
const AGENT_GID = 10001; // deploy/Containerfile's user and group
const HOST_PATHS = ["/run/pmesh", "/var/lib/pmesh"];
const STARTUP_BUDGET_S = 60; // WAL recovery of 1M records is ~1 s; headroom
const ROOT_INIT_CAPS = ["CHOWN"]; // hand host directories to the agent (daemonset.yaml)
const DEFAULT_SOCKET = "/run/pmesh/agent.sock";
const ETCD = "pmesh-etcd";
const ETCD_TLS = "pmesh-etcd-tls"; // scripts/gen-secrets
// etcd flag -> the key of pmesh-etcd-tls it must name
const ETCD_TLS_FILES = {
    "--trusted-ca-file": "ca.crt",
    "--cert-file": "server.crt",
    "--key-file": "server.key",
    "--peer-trusted-ca-file": "ca.crt",
    "--peer-cert-file": "server.crt",
    "--peer-key-file": "server.key",
};
const AGENT_LABELS = { "app.kubernetes.io/name": "pmesh", "app.kubernetes.io/component": "agent" };

function podSpecOf(obj) {
    switch (obj.kind) {
        case "Pod":
            return obj.spec;
        case "Deployment":
        case "DaemonSet":
        case "StatefulSet":
        case "ReplicaSet":
        case "Job":
            return obj.spec && obj.spec.template && obj.spec.template.spec;
        case "CronJob":
            return obj.spec?.jobTemplate?.spec?.template?.spec;
        default:
            return null;
    }
}

function podLabels(obj) {
    return obj.kind === "Pod" ? obj.metadata?.labels || {} : obj.spec?.template?.metadata?.labels || {};
}

function matches(selector, labels) {
    if (!selector || !Object.keys(selector).length) return false;
    return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

// ---- every workload ----------------------------------------------------------------

function checkContainer(c, pod, isInit, bad) {
    const name = `${isInit ? "initContainer" : "container"} ${c.name}`;
    const sc = c.securityContext || {};
    const psc = pod.securityContext || {};
    const eff = (k) => (sc[k] !== undefined ? sc[k] : psc[k]);
    if (!isInit) {
        if (!c.livenessProbe) bad(`${name}: no livenessProbe`);
        if (!c.readinessProbe) bad(`${name}: no readinessProbe`);
    }
    const r = c.resources || {};
    for (const kind of ["requests", "limits"])
        for (const res of ["cpu", "memory"])
            if (!r[kind] || r[kind][res] === undefined) bad(`${name}: no resources.${kind}.${res}`);
    if (sc.readOnlyRootFilesystem !== true) bad(`${name}: readOnlyRootFilesystem is not true`);
    if (sc.allowPrivilegeEscalation !== false) bad(`${name}: allowPrivilegeEscalation is not false`);
    if (sc.privileged) bad(`${name}: privileged`);
    const caps = sc.capabilities || {};
    if (!(caps.drop || []).includes("ALL")) bad(`${name}: capabilities.drop lacks ALL`);
    const seccomp = eff("seccompProfile");
    if (!seccomp || seccomp.type !== "RuntimeDefault") bad(`${name}: seccompProfile is not RuntimeDefault`);
    const root = eff("runAsNonRoot") !== true || eff("runAsUser") === undefined || eff("runAsUser") === 0;
    const added = caps.add || [];
    if (!isInit) {
        if (eff("runAsNonRoot") !== true) bad(`${name}: runAsNonRoot is not true`);
        if (eff("runAsUser") === undefined || eff("runAsUser") === 0) bad(`${name}: runAsUser is not a non-zero uid`);
        if (added.length) bad(`${name}: adds capabilities ${added.join(",")}`);
    } else if (root) {
        const extra = added.filter((a) => !ROOT_INIT_CAPS.includes(a));
        if (extra.length) bad(`${name}: runs as root with capabilities beyond ${ROOT_INIT_CAPS.join(",")}: ${extra}`);
    } else if (added.length) {
        bad(`${name}: adds capabilities ${added.join(",")}`);
    }
    const image = c.image || "";
    const tag = image.includes("@") ? "digest" : image.split("/").pop().split(":")[1];
    if (!tag || tag === "latest") bad(`${name}: image '${image}' has no pinned tag`);
}

function checkPod(obj, agentGid, bad) {
    const pod = podSpecOf(obj);
    if (!pod) return;
    if (pod.automountServiceAccountToken !== false) bad("automountServiceAccountToken is not false");
    for (const k of ["hostNetwork", "hostPID", "hostIPC"]) if (pod[k]) bad(`${k} is set`);
    for (const c of pod.containers || []) checkContainer(c, pod, false, bad);
    for (const c of pod.initContainers || []) checkContainer(c, pod, true, bad);
    for (const v of pod.volumes || []) {
        if (!v.hostPath) continue;
        const p = path.posix.normalize(v.hostPath.path || "");
        if (!HOST_PATHS.includes(p)) bad(`volume ${v.name}: hostPath ${p} (only ${HOST_PATHS.join(", ")})`);
    }
    if (!(obj.kind === "DaemonSet" && obj.metadata?.name === AGENT)) checkSocketUser(pod, agentGid, bad);
}

// A function pod that mounts the agent's socket directory: the agent's
// group, and the directory read-only.
function checkSocketUser(pod, agentGid, bad) {
    const socketVolumes = new Set(
        (pod.volumes || []).filter((v) => v.hostPath && path.posix.normalize(v.hostPath.path || "") === "/run/pmesh").map((v) => v.name)
    );
    if (!socketVolumes.size) return;
    const groups = (pod.securityContext && pod.securityContext.supplementalGroups) || [];
    if (!groups.includes(agentGid))
        bad(`mounts /run/pmesh without the agent's group ${agentGid} in supplementalGroups`);
    for (const c of [...(pod.containers || []), ...(pod.initContainers || [])])
        for (const m of c.volumeMounts || [])
            if (socketVolumes.has(m.name) && m.readOnly !== true)
                bad(`container ${c.name}: mounts /run/pmesh writable (readOnly: true is enough to connect)`);
}

// ---- etcd ----------------------------------------------------------------------------

// A container's flags as etcd reads them (--k=v or --k v), $(VAR)s expanded
// with vars; bare flags are "true".
function flagsOf(c, vars) {
    const args = [...(c.command || []).slice(1), ...(c.args || [])].map(String);
    const expand = (s) => s.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (all, n) => (vars[n] !== undefined ? vars[n] : all));
    const out = {};
    for (let i = 0; i < args.length; i++) {
        const a = args[i];
        if (!a.startsWith("--")) continue;
        const eq = a.indexOf("=");
        if (eq > 0) out[a.slice(0, eq)] = expand(a.slice(eq + 1));
        else if (i + 1 < args.length && !args[i + 1].startsWith("--")) out[a] = expand(args[++i]);
        else out[a] = "true";
    }
    return out;
}

function urlsOf(v) {
    return String(v || "")
        .split(",")
        .filter(Boolean)
        .map((u) => {
            const m = /^([a-z]+):\/\/([^/:]+|\[[^\]]+\]):(\d+)\/?$/.exec(u.trim());
            return m ? { scheme: m[1], host: m[2], port: Number(m[3]), url: u.trim() } : { scheme: null, url: u.trim() };
        });
}

// Pods (as label sets) a NetworkPolicy peer admits, judged against the
// allowed label sets: true only if it is a podSelector of this namespace
// that selects nothing but pods with one of the allowed label sets.
function peerOnly(f, allowed) {
    if (!f.podSelector || f.namespaceSelector || f.ipBlock) return false;
    if (f.podSelector.matchExpressions && f.podSelector.matchExpressions.length) return false;
    return allowed.some((labels) => matches(f.podSelector.matchLabels, labels));
}

// maxUnavailable/minAvailable (int or "N%") of n pods, as a count.
function pdbCount(v, n, roundUp) {
    if (typeof v === "number") return v;
    const m = /^(\d+)%$/.exec(String(v));
    if (!m) return NaN;
    const x = (Number(m[1]) * n) / 100;
    return roundUp ? Math.ceil(x) : Math.floor(x);
}

function checkEtcd(sts, all, bad) {
    const pod = podSpecOf(sts);
    const ns = sts.metadata.namespace || "default";
    const name = sts.metadata.name;
    const labels = podLabels(sts);
    const c = (pod.containers || [])[0];
    if (!c) return bad("no container");
    const replicas = sts.spec.replicas ?? 1;
    if (!(replicas >= 3 && replicas % 2 === 1))
        bad(`replicas ${replicas}: want an odd number, at least 3 (quorum survives a member lost)`);
    if (sts.spec.podManagementPolicy !== "Parallel")
        bad("podManagementPolicy is not Parallel: a member is ready only with quorum, so OrderedReady never starts the second");

    const env = {};
    for (const e of c.env || []) env[e.name] = e;
    const vars = { POD_NAMESPACE: ns };
    if (env.POD_NAMESPACE && env.POD_NAMESPACE.valueFrom?.fieldRef?.fieldPath !== "metadata.namespace") delete vars.POD_NAMESPACE;
    const f = flagsOf(c, vars);
    if (f["--name"] !== "$(POD_NAME)" || env.POD_NAME?.valueFrom?.fieldRef?.fieldPath !== "metadata.name")
        bad("--name is not $(POD_NAME) from metadata.name: members must be named as --initial-cluster names them");

    // Persistent data.
    const vcts = sts.spec.volumeClaimTemplates || [];
    if (!vcts.length) bad("no volumeClaimTemplates: members would lose their data with their pods");
    const dataDir = f["--data-dir"];
    if (!dataDir) bad("no --data-dir");
    else {
        const m = (c.volumeMounts || []).find((vm) => {
            const mp = vm.mountPath.replace(/\/+$/, "");
            return dataDir === mp || dataDir.startsWith(mp + "/");
        });
        if (!m || !vcts.some((v) => v.metadata?.name === m.name) || (pod.volumes || []).some((v) => v.name === m.name))
            bad(`--data-dir ${dataDir} is not on a volumeClaimTemplate (persistent volume)`);
        else if (m.readOnly) bad(`--data-dir ${dataDir} is mounted read-only`);
    }

    // Peers: the headless Service and the static cluster.
    const svcs = all.filter((o) => o.kind === "Service" && (o.metadata.namespace || "default") === ns);
    const peers = svcs.find((s) => s.metadata.name === sts.spec.serviceName);
    const peerUrls = urlsOf(f["--listen-peer-urls"]);
    const clientUrls = urlsOf(f["--listen-client-urls"]);
    const peerPort = peerUrls[0]?.port;
    const clientPort = clientUrls[0]?.port;
    if (!peers) bad(`serviceName ${sts.spec.serviceName} is not a Service in the render`);
    else {
        if (peers.spec.clusterIP !== "None") bad(`Service ${peers.metadata.name} (serviceName) is not headless`);
        if (peers.spec.publishNotReadyAddresses !== true)
            bad(`Service ${peers.metadata.name}: publishNotReadyAddresses is not true (members must find each other before ready)`);
        if (!matches(peers.spec.selector, labels)) bad(`Service ${peers.metadata.name} does not select the members`);
    }
    const dnsOf = (i) => `${name}-${i}.${sts.spec.serviceName}.${ns}.svc.cluster.local`;
    if (peerPort) {
        const want = [];
        for (let i = 0; i < replicas; i++) want.push(`${name}-${i}=https://${dnsOf(i)}:${peerPort}`);
        const got = String(f["--initial-cluster"] || "").split(",").filter(Boolean).sort();
        if (got.join(",") !== want.sort().join(","))
            bad(`--initial-cluster ${f["--initial-cluster"]} is not the ${replicas} members by their stable names (${want.join(",")})`);
        const adv = String(f["--initial-advertise-peer-urls"] || "").replace("$(POD_NAME)", `${name}-0`);
        if (adv !== `https://${dnsOf(0)}:${peerPort}`)
            bad(`--initial-advertise-peer-urls ${f["--initial-advertise-peer-urls"]} is not https://$(POD_NAME).${sts.spec.serviceName}...:${peerPort}`);
    }

    // TLS.
    for (const [flag, urls] of [["--listen-client-urls", clientUrls], ["--advertise-client-urls", urlsOf(f["--advertise-client-urls"])],
                                ["--listen-peer-urls", peerUrls]]) {
        if (!urls.length) bad(`no ${flag}`);
        for (const u of urls) if (u.scheme !== "https") bad(`${flag} ${u.url} is not https`);
    }
    if (f["--client-cert-auth"] !== "true") bad("--client-cert-auth is not on: anyone reaching the client port gets in");
    if (f["--peer-client-cert-auth"] !== "true") bad("--peer-client-cert-auth is not on");
    for (const [flag, key] of Object.entries(ETCD_TLS_FILES)) {
        const file = f[flag];
        if (!file) {
            bad(`no ${flag}`);
            continue;
        }
        const src = fileSource(c, pod, file);
        if (!src || src.kind !== "secret" || src.name !== ETCD_TLS || src.key !== key)
            bad(`${flag} ${file} is not key ${key} of the Secret ${ETCD_TLS}`);
        else if (src.mode & 0o007 || src.mode & 0o222) bad(`${flag} ${file}: mode ${src.mode.toString(8)} is writable or world-readable`);
    }

    // Probes: the plain-HTTP metrics listener (or a command); liveness without quorum.
    const ports = {};
    for (const p of c.ports || []) ports[p.name] = p.containerPort;
    const metricsPorts = urlsOf(f["--listen-metrics-urls"]).filter((u) => u.scheme === "http").map((u) => u.port);
    for (const [n, p] of [["startupProbe", c.startupProbe], ["livenessProbe", c.livenessProbe], ["readinessProbe", c.readinessProbe]]) {
        if (!p) continue;
        if (p.httpGet) {
            const port = typeof p.httpGet.port === "string" ? ports[p.httpGet.port] : p.httpGet.port;
            if (!metricsPorts.includes(port))
                bad(`${n} GETs port ${p.httpGet.port}, not a plain-HTTP --listen-metrics-urls port: the client port admits no kubelet (client-cert-auth)`);
        } else if (!p.exec) bad(`${n} is neither an HTTP GET of the metrics listener nor a command`);
    }
    const lp = c.livenessProbe?.httpGet?.path;
    if (lp && /^\/health(\?|$)/.test(lp) && !/serializable=true/.test(lp))
        bad(`livenessProbe GET ${lp} needs quorum: losing it would restart every member (use /health?serializable=true)`);

    // Disruptions: never more than quorum allows, never none.
    const quorum = Math.floor(replicas / 2) + 1;
    const pdbs = all.filter((o) => o.kind === "PodDisruptionBudget" && (o.metadata.namespace || "default") === ns &&
                                   matches(o.spec?.selector?.matchLabels, labels));
    if (!pdbs.length) bad("no PodDisruptionBudget selects the members");
    for (const pdb of pdbs) {
        const s = pdb.spec;
        const may = s.maxUnavailable !== undefined ? pdbCount(s.maxUnavailable, replicas, false) : replicas - pdbCount(s.minAvailable, replicas, true);
        if (!(may >= 1)) bad(`PodDisruptionBudget ${pdb.metadata.name} lets no member go: every drain would block`);
        else if (may > replicas - quorum)
            bad(`PodDisruptionBudget ${pdb.metadata.name} lets ${may} of ${replicas} members go: quorum (${quorum}) would be lost`);
    }

    // Who reaches the ports.
    const agent = all.find((o) => o.kind === "DaemonSet" && o.metadata?.name === AGENT && (o.metadata.namespace || "default") === ns);
    const agentLabels = agent ? podLabels(agent) : AGENT_LABELS;
    const pols = all.filter((o) => o.kind === "NetworkPolicy" && (o.metadata.namespace || "default") === ns &&
                                   matches(o.spec?.podSelector?.matchLabels, labels) &&
                                   (!o.spec.policyTypes || o.spec.policyTypes.includes("Ingress")));
    if (!pols.length) bad("no NetworkPolicy selects the members");
    let agentsIn = false;
    for (const pol of pols) {
        const rules = pol.spec.ingress || [];
        const covers = (r, port, pname) => !r.ports || r.ports.some((p) => p.port === port || p.port === pname);
        for (const r of rules) {
            if (covers(r, clientPort, "client")) {
                if (!(r.from || []).length || !r.from.every((x) => peerOnly(x, [agentLabels, labels])))
                    bad(`NetworkPolicy ${pol.metadata.name}: a rule lets more than the agents and the members reach the client port ${clientPort}`);
                else if (r.from.some((x) => matches(x.podSelector.matchLabels, agentLabels))) agentsIn = true;
            }
            if (covers(r, peerPort, "peer") && (!(r.from || []).length || !r.from.every((x) => peerOnly(x, [labels]))))
                bad(`NetworkPolicy ${pol.metadata.name}: a rule lets more than the members reach the peer port ${peerPort}`);
        }
    }
    if (pols.length && !agentsIn) bad(`no NetworkPolicy lets the agents reach the client port ${clientPort}`);

    if (!svcs.some((s) => s.spec.clusterIP !== "None" && matches(s.spec.selector, labels) &&
                          (s.spec.ports || []).some((p) => p.targetPort === "client" || p.targetPort === clientPort)))
        bad(`no ClusterIP Service for the clients (port ${clientPort})`);
}

// The agent's side: pmesh.yaml's coordination against the render.
function checkCoordination(cfg, c, pod, ns, all, secretFile, bad) {
    if (!cfg.coordination) return;
    const m = /^etcd:\/\/(.+)$/.exec(String(cfg.coordination));
    if (!m) return;
    for (const ep of m[1].split(",")) {
        const hm = /^([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local:(\d+)$/.exec(ep.trim());
        if (!hm || hm[2] !== ns) continue;
        const svc = all.find((o) => o.kind === "Service" && o.metadata.name === hm[1] && (o.metadata.namespace || "default") === ns);
        if (!svc) bad(`coordination ${ep}: no Service ${hm[1]} in the render`);
        else if (!(svc.spec.ports || []).some((p) => p.port === Number(hm[3])))
            bad(`coordination ${ep}: Service ${hm[1]} has no port ${hm[3]}`);
    }
    const etcd = all.find((o) => o.kind === "StatefulSet" && o.metadata?.name === ETCD && (o.metadata.namespace || "default") === ns);
    const wantsCerts = etcd && flagsOf((podSpecOf(etcd).containers || [])[0] || {}, {})["--client-cert-auth"] === "true";
    if (!cfg.coordination_cert_file !== !cfg.coordination_key_file)
        bad("pmesh.yaml sets one of coordination_cert_file and coordination_key_file without the other");
    for (const k of ["coordination_ca_file", "coordination_cert_file", "coordination_key_file"]) {
        if (cfg[k]) secretFile(cfg[k], k);
        else if (wantsCerts) bad(`pmesh.yaml sets coordination but no ${k}: the render's etcd admits only holders of a client certificate`);
    }
}

// ---- the agent ---------------------------------------------------------------------

// The file a container sees at p, as {kind: "configMap"|"secret", name, key,
// mode}, from its volumeMounts and the pod's volumes; null if p is in none.
function fileSource(c, pod, p) {
    for (const m of c.volumeMounts || []) {
        const mp = m.mountPath.replace(/\/+$/, "");
        if (!(p === mp || p.startsWith(mp + "/"))) continue;
        const rel = path.posix.relative(mp, p);
        const v = (pod.volumes || []).find((x) => x.name === m.name);
        if (!v) return null;
        const sources = v.projected
            ? v.projected.sources || []
            : v.configMap
              ? [{ configMap: v.configMap }]
              : v.secret
                ? [{ secret: { ...v.secret, name: v.secret.secretName } }]
                : [];
        const defaultMode = v.projected ? v.projected.defaultMode : (v.configMap || v.secret || {}).defaultMode;
        for (const s of sources) {
            const kind = s.configMap ? "configMap" : s.secret ? "secret" : null;
            if (!kind) continue;
            const src = s[kind];
            for (const it of src.items || []) {
                if (it.path === rel)
                    return { kind, name: src.name, key: it.key, mode: it.mode ?? defaultMode ?? 0o644, mount: m };
            }
            if (!src.items && !rel.includes("/"))
                return { kind, name: src.name, key: rel, mode: defaultMode ?? 0o644, mount: m };
        }
        return null;
    }
    return null;
}

function hostPathOf(c, pod, dir) {
    for (const m of c.volumeMounts || []) {
        const mp = m.mountPath.replace(/\/+$/, "");
        if (dir !== mp && !dir.startsWith(mp + "/")) continue;
        const v = (pod.volumes || []).find((x) => x.name === m.name);
        return v && v.hostPath ? { path: path.posix.join(v.hostPath.path, path.posix.relative(mp, dir)), mount: m } : null;
    }
    return null;
}

function portOf(endpoint) {
    const m = /:(\d+)$/.exec(String(endpoint || ""));
    return m ? Number(m[1]) : null;
}

function checkAgent(ds, all, opts, bad) {
    const pod = podSpecOf(ds);
    const ns = ds.metadata.namespace || "default";
    const labels = podLabels(ds);
    const c = (pod.containers || [])[0];
    if (!c) return bad("no container");
    const psc = pod.securityContext || {};

    if (!(pod.tolerations || []).some((t) => t.operator === "Exists" && !t.key && !t.effect))
        bad("does not tolerate every taint (operator: Exists, no key)");
    if (pod.priorityClassName !== "system-node-critical") bad("priorityClassName is not system-node-critical");
    const grace = pod.terminationGracePeriodSeconds;
    if (!(grace >= 5 && grace <= 120)) bad(`terminationGracePeriodSeconds ${grace}: want 5..120 for a graceful leave`);
    const us = ds.spec.updateStrategy || {};
    if (us.type !== "RollingUpdate" || String(us.rollingUpdate?.maxUnavailable) !== "1")
        bad("updateStrategy is not RollingUpdate with maxUnavailable 1");
    if (psc.runAsUser !== AGENT_GID || psc.runAsGroup !== AGENT_GID || psc.fsGroup !== AGENT_GID)
        bad(`pod runAsUser/runAsGroup/fsGroup are not ${AGENT_GID}`);

    const sp = c.startupProbe;
    if (!sp) bad("no startupProbe");
    else {
        const budget = (sp.initialDelaySeconds || 0) + (sp.periodSeconds || 10) * (sp.failureThreshold || 3);
        if (budget < STARTUP_BUDGET_S) bad(`startupProbe allows ${budget} s; WAL recovery wants ${STARTUP_BUDGET_S}`);
    }
    const probePath = (p) => p && p.httpGet && p.httpGet.path;
    if (probePath(c.livenessProbe) !== "/healthz") bad("livenessProbe is not GET /healthz");
    if (probePath(c.readinessProbe) !== "/readyz") bad("readinessProbe is not GET /readyz");

    const env = {};
    for (const e of c.env || []) env[e.name] = e;
    if (env.NODE_NAME?.valueFrom?.fieldRef?.fieldPath !== "spec.nodeName") bad("NODE_NAME is not spec.nodeName");
    if (env.POD_IP?.valueFrom?.fieldRef?.fieldPath !== "status.podIP") bad("POD_IP is not status.podIP");
    // $(VAR) as the kubelet expands it, with sample values for field refs.
    const sample = { "spec.nodeName": "node-a", "status.podIP": "10.1.2.3" };
    const expand = (s) =>
        s.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (all, n) => {
            const e = env[n];
            if (!e) return all;
            return e.value !== undefined ? e.value : sample[e.valueFrom?.fieldRef?.fieldPath] ?? all;
        });
    const args = [...(c.command || []).slice(1), ...(c.args || [])].map(String);
    const flag = (name) => {
        const i = args.indexOf(name);
        return i >= 0 ? args[i + 1] : undefined;
    };
    const cfgPath = flag("--config");
    const advertise = flag("--advertise");
    if (!cfgPath) return bad("no --config in the container's args");
    if (!advertise || !advertise.includes("$(POD_IP)")) bad("--advertise does not use $(POD_IP)");

    const cfgSrc = fileSource(c, pod, cfgPath);
    if (!cfgSrc || cfgSrc.kind !== "configMap") return bad(`--config ${cfgPath} is not a ConfigMap file`);
    const cm = all.find((o) => o.kind === "ConfigMap" && o.metadata.name === cfgSrc.name && (o.metadata.namespace || "default") === ns);
    if (!cm || !cm.data || typeof cm.data[cfgSrc.key] !== "string")
        return bad(`ConfigMap ${cfgSrc.name} with key ${cfgSrc.key} is not in the render`);
    const text = cm.data[cfgSrc.key];
    let cfg;
    try {
        cfg = YAML.parse(text, { version: "1.1" }) || {};
    } catch (e) {
        return bad(`ConfigMap ${cfgSrc.name}/${cfgSrc.key}: ${e.message}`);
    }

    // Ports: bind, advertise, containerPort, Services, NetworkPolicy, probes, scrape annotation.
    const ports = {};
    for (const p of c.ports || []) ports[p.name] = p.containerPort;
    const meshPort = portOf(cfg.bind);
    const httpPort = portOf(cfg.http);
    if (!cfg.bind) bad("pmesh.yaml sets no bind: the agents would not form a mesh");
    if (meshPort !== ports.mesh) bad(`bind port ${meshPort} is not containerPort mesh (${ports.mesh})`);
    if (portOf(advertise) !== meshPort) bad(`--advertise port ${portOf(advertise)} is not the bind port ${meshPort}`);
    if (!cfg.http) bad("pmesh.yaml sets no http: no probes, metrics or webhooks");
    if (httpPort !== ports.http) bad(`http port ${httpPort} is not containerPort http (${ports.http})`);
    const publicPort = portOf(cfg.http_public);
    if (!cfg.http_public) bad("pmesh.yaml sets no http_public: outside systems would need the full API's port");
    else if (publicPort !== ports["http-public"]) bad(`http_public port ${publicPort} is not containerPort http-public (${ports["http-public"]})`);
    if (publicPort === httpPort) bad("http and http_public share a port");
    for (const [n, p] of [["startupProbe", c.startupProbe], ["livenessProbe", c.livenessProbe], ["readinessProbe", c.readinessProbe]]) {
        const port = p && p.httpGet && p.httpGet.port;
        if (p && port !== "http" && port !== httpPort) bad(`${n} port ${port} is not the http port`);
    }
    const ann = ds.spec.template.metadata?.annotations || {};
    if (ann["prometheus.io/scrape"] !== "true" || Number(ann["prometheus.io/port"]) !== httpPort)
        bad(`prometheus.io/scrape and prometheus.io/port (${ann["prometheus.io/port"]}) do not name the http port ${httpPort}`);

    const services = all.filter((o) => o.kind === "Service" && (o.metadata.namespace || "default") === ns && matches(o.spec?.selector, labels));
    const peers = services.find((s) => s.spec.clusterIP === "None");
    if (!peers) bad("no headless Service selects the agents (the seed)");
    else {
        if (peers.spec.publishNotReadyAddresses !== true) bad(`Service ${peers.metadata.name}: publishNotReadyAddresses is not true`);
        const sp = (peers.spec.ports || []).find((p) => p.targetPort === "mesh" || p.targetPort === meshPort);
        const want = sp && `tcp://${peers.metadata.name}.${ns}.svc.cluster.local:${sp.port}`;
        if (!sp) bad(`Service ${peers.metadata.name} has no port for the mesh`);
        else if (!(cfg.seeds || []).includes(want)) bad(`seeds ${JSON.stringify(cfg.seeds)} do not include ${want}`);
    }
    if (!services.some((s) => s.spec.clusterIP !== "None" && (s.spec.ports || []).some((p) => p.targetPort === "http" || p.targetPort === httpPort)))
        bad("no ClusterIP Service for the HTTP gateway");
    const publicSvc = services.find((s) => s.spec.clusterIP !== "None" && (s.spec.ports || []).some((p) => p.targetPort === "http-public" || p.targetPort === publicPort));
    if (!publicSvc) bad("no ClusterIP Service for the public HTTP listener");
    else if ((publicSvc.spec.ports || []).some((p) => p.targetPort === "http" || p.targetPort === httpPort))
        bad(`Service ${publicSvc.metadata.name} exposes the full API next to the public listener`);
    else if (cfg.http_public_url && !cfg.http_public_url.startsWith(`http://${publicSvc.metadata.name}.${ns}.svc.cluster.local:${publicSvc.spec.ports[0].port}`)
             && cfg.http_public_url.includes(".svc.cluster.local"))
        bad(`http_public_url ${cfg.http_public_url} names a Service other than the public one (${publicSvc.metadata.name})`);

    const pols = all.filter((o) => o.kind === "NetworkPolicy" && (o.metadata.namespace || "default") === ns && matches(o.spec?.podSelector?.matchLabels, labels));
    if (!pols.length) bad("no NetworkPolicy selects the agents");
    for (const pol of pols) {
        const rules = pol.spec.ingress || [];
        const covers = (r, port) => !r.ports || r.ports.some((p) => p.port === port || p.port === "mesh" && port === meshPort || p.port === "http" && port === httpPort || p.port === "http-public" && port === publicPort);
        for (const r of rules) {
            if (!covers(r, meshPort)) continue;
            const onlyAgents = (r.from || []).length > 0 && r.from.every((f) => f.podSelector && !f.namespaceSelector && !f.ipBlock && matches(f.podSelector.matchLabels, labels));
            if (!onlyAgents) bad(`NetworkPolicy ${pol.metadata.name}: a rule lets more than agents reach the mesh port ${meshPort}`);
        }
        // The full API only to agents and labelled client pods; the public port to everyone.
        for (const r of rules) {
            if (!covers(r, httpPort)) continue;
            const scoped = (r.from || []).length > 0 && r.from.every((f) => !f.ipBlock && f.podSelector && Object.keys(f.podSelector.matchLabels || {}).length > 0);
            if (!scoped) bad(`NetworkPolicy ${pol.metadata.name}: a rule opens the full HTTP API port ${httpPort} beyond labelled pods (only the public port ${publicPort} may be)`);
        }
        if (!rules.some((r) => covers(r, httpPort) && (r.from || []).some((f) => f.podSelector && f.podSelector.matchLabels && f.podSelector.matchLabels["pmesh.io/client"] === "true")))
            bad(`NetworkPolicy ${pol.metadata.name}: client pods (pmesh.io/client: "true") cannot reach the HTTP API port ${httpPort}`);
        if (!rules.some((r) => covers(r, publicPort) && (!r.from || r.from.length === 0)))
            bad(`NetworkPolicy ${pol.metadata.name}: the public HTTP port ${publicPort} is not open to outside systems`);
    }

    // Files and directories the config names must be where the pod puts them.
    const hp = (dir, what) => {
        const h = hostPathOf(c, pod, dir);
        if (!h) bad(`${what} ${dir} is not on a hostPath`);
        else if (h.mount.readOnly) bad(`${what} ${dir} is mounted read-only`);
        return h;
    };
    if (cfg.data_dir) hp(cfg.data_dir, "data_dir");
    else bad("pmesh.yaml sets no data_dir: promises would not survive a restart");
    const socket = cfg.socket || env.PMESH_SOCKET?.value || DEFAULT_SOCKET;
    const sh = hp(path.posix.dirname(socket), "socket directory");
    if (sh && sh.path !== "/run/pmesh") bad(`socket directory is hostPath ${sh.path}, not /run/pmesh (where functions look)`);
    const secretFile = (p, what) => {
        const s = fileSource(c, pod, p);
        if (!s || s.kind !== "secret") return bad(`${what} ${p} is not a Secret file`);
        if (s.mode & 0o007 || s.mode & 0o222) bad(`${what} ${p}: mode ${s.mode.toString(8)} is writable or world-readable`);
    };
    if (cfg.mesh_key_dir) {
        secretFile(path.posix.join(cfg.mesh_key_dir, "mesh.pub"), "mesh_key_dir");
        secretFile(path.posix.join(cfg.mesh_key_dir, "mesh.key"), "mesh_key_dir");
    }
    if (cfg.token_secret_file) secretFile(cfg.token_secret_file, "token_secret_file");
    checkCoordination(cfg, c, pod, ns, all, secretFile, bad);
    if (cfg.http_api_keys_file) secretFile(cfg.http_api_keys_file, "http_api_keys_file");
    else if (cfg.insecure_http !== true) bad("pmesh.yaml sets neither http_api_keys_file nor insecure_http: the agent refuses to serve http on a pod IP without keys");
    if (opts.requireCurve) {
        if (!cfg.mesh_key_dir) bad("pmesh.yaml sets no mesh_key_dir: CURVE is required here");
        if (cfg.insecure === true) bad("pmesh.yaml sets insecure: true: not allowed here");
        if (!cfg.http_api_keys_file) bad("pmesh.yaml sets no http_api_keys_file: API keys are required here");
        if (cfg.insecure_http === true) bad("pmesh.yaml sets insecure_http: true: not allowed here");
    }

    const saName = pod.serviceAccountName || "default";
    const sa = all.find((o) => o.kind === "ServiceAccount" && o.metadata.name === saName && (o.metadata.namespace || "default") === ns);
    if (!sa) bad(`ServiceAccount ${saName} is not in the render`);
    else if (sa.automountServiceAccountToken !== false) bad(`ServiceAccount ${saName}: automountServiceAccountToken is not false`);
    for (const b of all.filter((o) => o.kind === "RoleBinding" || o.kind === "ClusterRoleBinding"))
        if ((b.subjects || []).some((s) => s.kind === "ServiceAccount" && s.name === saName))
            bad(`${describe(b)} gives the agent's ServiceAccount permissions`);
    if (!all.some((o) => o.kind === "Namespace" && o.metadata.name === ns)) bad(`Namespace ${ns} is not in the render`);

    if (opts.extract) {
        fs.mkdirSync(opts.extract, { recursive: true });
        const file = path.join(opts.extract, "pmesh.yaml");
        fs.writeFileSync(file, text);
        const out = args.map(expand);
        out[out.indexOf("--config") + 1] = file;
        fs.writeFileSync(path.join(opts.extract, "args"), out.join("\n") + "\n");
        fs.writeFileSync(path.join(opts.extract, "env"), `NODE_NAME=${sample["spec.nodeName"]}\nPOD_IP=${sample["status.podIP"]}\n`);
        if (cfg.mesh_key_dir) fs.writeFileSync(path.join(opts.extract, "curve"), cfg.mesh_key_dir + "\n");
    }
}

function main(argv) {
    const opts = { requireCurve: false, extract: null };
    const files = [];
    for (let i = 0; i < argv.length; i++) {
        if (argv[i] === "--require-curve") opts.requireCurve = true;
        else if (argv[i] === "--extract") opts.extract = argv[++i];
        else files.push(argv[i]);
    }
    if (files.length !== 1) {
        process.stderr.write("usage: policy.js [--require-curve] [--extract DIR] FILE\n");
        return 64;
    }
    const all = readDocs(readFileOrStdin(files[0]), files[0]);
    const agent = all.find((o) => o.kind === "DaemonSet" && o.metadata?.name === AGENT);
    const agentGid = agent ? podSpecOf(agent)?.securityContext?.runAsGroup ?? AGENT_GID : AGENT_GID;
    let broken = 0;
    for (const obj of all) {
        const problems = [];
        const bad = (m) => problems.push(m);
        checkPod(obj, agentGid, bad);
        // Fission merges this podspec into its function pods.
        if (obj.apiVersion === "fission.io/v1" && obj.kind === "Environment" && obj.spec?.runtime?.podspec)
            checkSocketUser(obj.spec.runtime.podspec, agentGid, bad);
        if (obj === agent) checkAgent(obj, all, opts, bad);
        if (obj.kind === "StatefulSet" && obj.metadata?.name === ETCD) checkEtcd(obj, all, bad);
        if (obj.kind === "ServiceAccount" && obj.automountServiceAccountToken !== false)
            bad("automountServiceAccountToken is not false");
        if (problems.length) {
            broken++;
            console.log(`not ok - ${describe(obj)}`);
            for (const p of problems) console.log(`#   ${p}`);
        } else {
            console.log(`ok - ${describe(obj)}`);
        }
    }
    if (opts.extract && !agent) {
        console.log(`not ok - --extract: no DaemonSet ${AGENT} in ${files[0]}`);
        broken++;
    }
    console.log(`${all.length} objects, ${broken} breaking the rules`);
    return broken ? 1 : 0;
}

process.exitCode = main(process.argv.slice(2));
