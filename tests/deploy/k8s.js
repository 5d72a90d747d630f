// k8s.js - what the deploy checks share: loading the pinned npm packages
// (deploy/validate, installed by `npm ci`), reading Kubernetes YAML the way
// the API server's decoder does, and finding the model class of an object.
"use strict";

const fs = require("fs");
const path = require("path");
const { createRequire } = require("module");

const ROOT = path.resolve(__dirname, "..", "..");
const PKG_DIR = path.join(ROOT, "deploy", "validate");

// require() from deploy/validate/node_modules, with a message that says what
// to do when the packages are not installed.
const pkgRequire = createRequire(path.join(PKG_DIR, "package.json"));
function need(name) {
    try {
        return pkgRequire(name);
    } catch (e) {
        if (e.code !== "MODULE_NOT_FOUND") throw e;
        process.stderr.write(
            `deploy-check: the npm package '${name}' is not installed in deploy/validate.\n` +
                `  Run: make deps   (or: npm ci --prefix deploy/validate)\n`
        );
        process.exit(2);
    }
}

const YAML = need("yaml");

// Every document of a YAML stream, as plain objects. YAML 1.1 like the
// Kubernetes decoder (go-yaml v2): `yes` and `on` are booleans, 0440 is octal.
// Duplicate keys and syntax errors are errors. Empty documents are skipped.
function readDocs(text, name) {
    const docs = YAML.parseAllDocuments(text, { version: "1.1", uniqueKeys: true });
    const out = [];
    for (const d of docs) {
        if (d.errors && d.errors.length) {
            throw new Error(`${name}: YAML: ${d.errors[0].message}`);
        }
        const v = d.toJS({ maxAliasCount: 100 });
        if (v === null || v === undefined) continue;
        out.push(v);
    }
    return out;
}

function readFileOrStdin(file) {
    return file === "-" ? fs.readFileSync(0, "utf8") : fs.readFileSync(file, "utf8");
}

// The kubernetes-models class for apiVersion + kind, or null.
function modelClass(apiVersion, kind) {
    if (typeof apiVersion !== "string" || typeof kind !== "string") return null;
    if (!/^[A-Za-z0-9]+$/.test(kind)) return null;
    const parts = apiVersion.split("/");
    if (parts.length > 2 || parts.some((p) => !/^[a-z0-9.-]+$/.test(p))) return null;
    need("@kubernetes-models/base"); // installed at all?
    try {
        return pkgRequire("kubernetes-models/" + parts.join("/") + "/" + kind)[kind] || null;
    } catch (e) {
        if (e.code === "MODULE_NOT_FOUND" || e.code === "ERR_PACKAGE_PATH_NOT_EXPORTED") return null;
        throw e;
    }
}

function describe(obj) {
    const m = (obj && obj.metadata) || {};
    return `${obj && obj.kind}/${m.namespace ? m.namespace + "/" : ""}${m.name}`;
}

module.exports = { ROOT, need, readDocs, readFileOrStdin, modelClass, describe };
