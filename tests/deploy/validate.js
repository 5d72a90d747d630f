#!/usr/bin/env node
// validate.js - checks Kubernetes manifests offline against the API's
// OpenAPI schemas (the kubernetes-models package, generated from them).
//
//   node tests/deploy/validate.js FILE... ('-' reads stdin)
//
// Every object of every YAML stream is checked: its apiVersion/kind must
// have a schema, every field must have the schema's type (validate()), and
// no field may be one the schema does not know. kubernetes-models' schemas
// accept unknown fields (as the API server silently drops them unless asked
// for strict validation), so unknown fields are found here: validate() runs
// on a tree of Proxies that records which fields the schema's code looks
// at; a field of an object the schema describes that it never looked at is
// one the schema does not have. Objects the schema leaves free-form (none of
// their fields looked at, not even a missing one) are not judged.
//
// Custom resources embed Kubernetes types; those are checked where known
// (a Fission Environment's spec.runtime.podSpec is a PodSpec), the rest of
// a custom resource is not.
//
// Prints one line per object; exits 1 if anything is wrong, 2 if the npm
// packages are missing.
"use strict";

const { readDocs, readFileOrStdin, modelClass, describe } = require("./k8s.js");

// Builds a copy of v whose objects are Proxies recording the fields read.
function track(v, where, nodes) {
    if (Array.isArray(v)) return v.map((x, i) => track(x, `${where}[${i}]`, nodes));
    if (v === null || typeof v !== "object") return v;
    const rec = { where, obj: v, seen: new Set(), touched: false };
    nodes.push(rec);
    const copy = {};
    for (const k of Object.keys(v)) copy[k] = track(v[k], where ? `${where}.${k}` : k, nodes);
    const note = (k) => {
        if (typeof k === "string") {
            rec.touched = true;
            rec.seen.add(k);
        }
    };
    return new Proxy(copy, {
        get(o, k, r) {
            note(k);
            return Reflect.get(o, k, r);
        },
        has(o, k) {
            note(k);
            return Reflect.has(o, k);
        },
        ownKeys(o) {
            rec.touched = true;
            for (const k of Reflect.ownKeys(o)) note(k);
            return Reflect.ownKeys(o);
        },
    });
}

// Problems of obj against model class cls ([] if none). prefix names where
// obj sits in the object that holds it.
function check(cls, obj, prefix) {
    const nodes = [];
    const tracked = track(obj, "", nodes);
    try {
        cls.prototype.validate.call(tracked);
    } catch (e) {
        const errs = e.errors || e.details;
        if (!Array.isArray(errs)) return [`${prefix}: ${e.message}`];
        // Unknown fields are judged only on a valid object: a failed
        // validation stops early and would leave fields unread.
        return errs.map((x) => {
            const at = (x.instancePath || "")
                .split("/")
                .filter((s) => s !== "")
                .map((s) => (/^[0-9]+$/.test(s) ? `[${s}]` : `.${s}`))
                .join("")
                .replace(/^\./, "");
            const what = x.params && x.params.allowedValues ? ` (${x.params.allowedValues.join(", ")})` : "";
            const where = prefix && at && !at.startsWith("[") ? `${prefix}.${at}` : `${prefix}${at}`;
            return `${where}: ${x.message || x.keyword}${what}`;
        });
    }
    const out = [];
    for (const n of nodes) {
        if (!n.touched) continue; // free-form in the schema
        for (const k of Object.keys(n.obj)) {
            if (!n.seen.has(k)) out.push(`${prefix}${n.where ? "." + n.where : ""}.${k}: unknown field`);
        }
    }
    return out;
}

// Kubernetes types embedded in custom resources: [path, apiVersion, kind,
// defaults for what the custom resource may leave out]. Fission merges its
// podspec into pods it makes, so containers may be missing there.
const EMBEDDED = {
    "fission.io/v1 Environment": [["spec.runtime.podspec", "v1", "PodSpec", { containers: [] }]],
};

function at(obj, dotted) {
    return dotted.split(".").reduce((o, k) => (o && typeof o === "object" ? o[k] : undefined), obj);
}

function validateObject(obj) {
    if (!obj || typeof obj !== "object" || Array.isArray(obj)) return ["not an object"];
    if (!obj.apiVersion || !obj.kind) return ["no apiVersion or kind"];
    const embedded = EMBEDDED[`${obj.apiVersion} ${obj.kind}`];
    if (embedded) {
        const out = [];
        if (!obj.metadata || typeof obj.metadata.name !== "string") out.push("metadata.name: missing");
        for (const [p, group, kind, defaults] of embedded) {
            const v = at(obj, p);
            if (v !== undefined) out.push(...check(modelClass(group, kind), { ...defaults, ...v }, p));
        }
        return out;
    }
    const cls = modelClass(obj.apiVersion, obj.kind);
    if (!cls) return [`no schema for apiVersion ${obj.apiVersion}, kind ${obj.kind}`];
    const out = check(cls, obj, "");
    return out.map((s) => s.replace(/^\./, ""));
}

function main(files) {
    if (!files.length) {
        process.stderr.write("usage: validate.js FILE... ('-': stdin)\n");
        return 64;
    }
    let bad = 0;
    let total = 0;
    for (const f of files) {
        let docs;
        try {
            docs = readDocs(readFileOrStdin(f), f);
        } catch (e) {
            console.log(`not ok - ${e.message}`);
            bad++;
            continue;
        }
        if (!docs.length) {
            console.log(`not ok - ${f}: no objects`);
            bad++;
        }
        for (const obj of docs) {
            total++;
            const problems = validateObject(obj);
            if (problems.length) {
                bad++;
                console.log(`not ok - ${f}: ${describe(obj)}`);
                for (const p of problems) console.log(`#   ${p}`);
            } else {
                console.log(`ok - ${f}: ${describe(obj)}`);
            }
        }
    }
    console.log(`${total} objects, ${bad} invalid`);
    return bad ? 1 : 0;
}

module.exports = { validateObject };
if (require.main === module) process.exitCode = main(process.argv.slice(2));
