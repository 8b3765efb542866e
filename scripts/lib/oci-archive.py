#!/usr/bin/env python3
"""Packs a directory as a one-layer OCI image archive, without a container engine.

    oci-archive.py OUT.tar REF ROOTFS CONFIG.json

OUT.tar is an OCI image layout in a tar (oci-layout, index.json, blobs/sha256/...),
as `ctr images import` reads it. REF (e.g. stepwise.local/busybox:1.35.0) names the
image in index.json. ROOTFS is packed as the single layer with its numeric owners,
modes and symlinks, sorted and with every mtime 0, so the same input gives the same
digest. CONFIG.json is the image config's "config" object (User, Env, Entrypoint,
Cmd, Labels, ExposedPorts, WorkingDir). Prints the manifest digest.
"""
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile


def layer_tar(rootfs):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        paths = []
        for base, dirs, files in os.walk(rootfs):
            dirs.sort()
            for name in sorted(dirs + files):
                paths.append(os.path.join(base, name))
        for path in sorted(paths, key=lambda p: os.path.relpath(p, rootfs)):
            rel = os.path.relpath(path, rootfs)
            info = tar.gettarinfo(path, arcname=rel)
            info.mtime = 0
            info.uname = info.gname = ""
            if info.isreg():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return buf.getvalue()


def blob(out, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo("blobs/sha256/" + digest.split(":")[1])
    info.size = len(data)
    info.mode = 0o644
    out.addfile(info, io.BytesIO(data))
    return digest


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    out_path, ref, rootfs, config_path = sys.argv[1:]
    with open(config_path) as f:
        image_config = json.load(f)
    raw = layer_tar(rootfs)
    compressed = gzip.compress(raw, mtime=0)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": image_config,
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest()]},
        "history": [{"created_by": "scripts/lib/oci-archive.py " + ref}],
    }
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    tmp = out_path + ".tmp"
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as out:
        layout = json.dumps({"imageLayoutVersion": "1.0.0"}).encode()
        info = tarfile.TarInfo("oci-layout")
        info.size = len(layout)
        info.mode = 0o644
        out.addfile(info, io.BytesIO(layout))
        for d in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            out.addfile(info)
        layer_digest = blob(out, compressed)
        config_digest = blob(out, config_bytes)
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": len(config_bytes),
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": layer_digest,
                "size": len(compressed),
            }],
        }
        manifest_bytes = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        manifest_digest = blob(out, manifest_bytes)
        index = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": len(manifest_bytes),
                "platform": {"architecture": "amd64", "os": "linux"},
                # containerd names the imported image after this one...
                "annotations": {
                    "io.containerd.image.name": ref,
                    # ...and other tools after this one.
                    "org.opencontainers.image.ref.name": ref,
                },
            }],
        }
        index_bytes = json.dumps(index, sort_keys=True, separators=(",", ":")).encode()
        info = tarfile.TarInfo("index.json")
        info.size = len(index_bytes)
        info.mode = 0o644
        out.addfile(info, io.BytesIO(index_bytes))
    os.replace(tmp, out_path)
    print(manifest_digest)


if __name__ == "__main__":
    main()
