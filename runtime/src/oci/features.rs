//! `features`: what this runtime implements, in runc's `features` document.

/// What `runc features` reports, for what this runtime implements.
pub fn features() -> serde_json::Value {
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": oci_spec::runtime::VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer",
                  "poststart", "poststop"],
        "mountOptions": [
            "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec",
            "iversion", "lazytime", "loud", "mand", "noatime", "nodev", "nodiratime",
            "noexec", "noiversion", "nolazytime", "nomand", "norelatime", "nostrictatime",
            "nosuid", "nosymfollow", "private", "rbind", "relatime", "remount", "ro",
            "rprivate", "rshared", "rslave", "runbindable", "rw", "shared", "silent",
            "slave", "strictatime", "suid", "symfollow", "sync", "tmpcopyup",
            "unbindable"
        ],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "cgroup": { "v1": true, "v2": true, "systemd": true, "systemdUser": false },
            "seccomp": { "enabled": true },
            "apparmor": { "enabled": true },
            "selinux": { "enabled": true },
            "intelRdt": { "enabled": true }
        },
        "annotations": {
            "org.freezeframe.commit": "live commit of running sessions to OCI images",
            "org.freezeframe.seed-home": "false turns home seeding off for one container"
        }
    })
}
