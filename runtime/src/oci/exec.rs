//! `exec`: runs a new process in a container, from a process.json or, as
//! runc does, from a command line applied to the spec's own process.

use std::io::Seek;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::ContainerStatus::{Created, Paused, Running};
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::signal::{self, Signal};
use oci_spec::runtime::{Capabilities, Capability, Process, Spec};

use super::common::{load_json, require_status};
use super::console::ConsoleSocket;
use super::error::{console_error, lib, Error, Result};
use super::foreground::{block_forwarded_signals, forward_until_exit};
use super::Runtime;

/// What `exec` takes besides the id.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// A process.json in the runtime spec's format (what containerd passes).
    pub process: Option<PathBuf>,
    /// Or the command line, run as runc runs it: the spec's process (its user,
    /// cwd, environment, capabilities, rlimits) with these changes.
    pub args: Vec<String>,
    /// Give the process a pseudo-terminal (runc's `--tty`).
    pub terminal: bool,
    pub env: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub user: Option<(u32, Option<u32>)>,
    pub additional_gids: Vec<u32>,
    /// Capabilities added to the process's sets.
    pub caps: Vec<String>,
    pub no_new_privs: bool,
    /// Exec into a paused container too (runc's `--ignore-paused`).
    pub ignore_paused: bool,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: i32,
}

impl Runtime {
    /// Starts a process in the container. Detached, returns 0 once it runs;
    /// otherwise waits for it and returns its exit code.
    pub fn exec(&self, id: &str, opts: &ExecOptions) -> Result<i32> {
        let c = self.load(id)?;
        require_status(
            &c,
            if opts.ignore_paused {
                &[Running, Created, Paused]
            } else {
                &[Running, Created]
            },
        )?;
        // A command line becomes a process.json in an unnamed file, which
        // libcontainer reads (before it forks) through /proc/self/fd.
        let unnamed;
        let (process, terminal) = match &opts.process {
            Some(path) => (path.clone(), load_json::<Process>(path)?.terminal()),
            None => {
                let spec = load_json::<Spec>(&c.bundle().join("config.json"))?;
                let process = exec_process(&spec, opts).map_err(|message| Error::Exec {
                    id: id.into(),
                    message,
                })?;
                unnamed = process_file(&process)?;
                let path = PathBuf::from(format!("/proc/self/fd/{}", unnamed.as_raw_fd()));
                (path, process.terminal())
            }
        };
        let (console, console_socket) =
            self.console_for(terminal, opts.detach, &opts.console_socket)?;
        let pid = ContainerBuilder::new(id.to_string(), SyscallType::default())
            .with_root_path(&self.root)
            .and_then(|b| b.with_pid_file(opts.pid_file.as_ref()))
            .map(|b| {
                b.with_console_socket(console_socket.as_ref())
                    .with_preserved_fds(opts.preserve_fds)
                    .as_tenant()
                    .with_detach(opts.detach || console.is_some())
                    .with_process(Some(&process))
                    .with_ignore_paused(opts.ignore_paused)
            })
            .and_then(|b| b.build())
            .map_err(lib(id, "exec"))?;
        if opts.detach {
            return Ok(0);
        }
        // Blocked after the fork, which the process would inherit; one that has
        // exited already is reaped by the wait loop's first pass.
        let forwarded = block_forwarded_signals()?;
        let console = console
            .map(ConsoleSocket::attach)
            .transpose()
            .map_err(|source| {
                let _ = signal::kill(pid, Signal::SIGKILL);
                console_error(id, source)
            })?;
        let code = forward_until_exit(pid, &forwarded, console.as_ref());
        if let Some(console) = console {
            console.finish();
        }
        code
    }
}

/// The process `runc exec ID ARGS…` runs: the spec's own, with the command
/// line's arguments, terminal, cwd, user, groups, capabilities, environment
/// (a variable given replaces the spec's) and no-new-privileges.
fn exec_process(spec: &Spec, opts: &ExecOptions) -> std::result::Result<Process, String> {
    if opts.args.is_empty() {
        return Err("no command given".into());
    }
    let mut p = spec.process().clone().unwrap_or_default();
    p.set_args(Some(opts.args.clone()));
    p.set_terminal(Some(opts.terminal));
    if let Some(cwd) = &opts.cwd {
        if cwd.is_relative() {
            return Err(format!("--cwd {}: not an absolute path", cwd.display()));
        }
        p.set_cwd(cwd.clone());
    }
    if let Some((uid, gid)) = opts.user {
        p.user_mut().set_uid(uid);
        if let Some(gid) = gid {
            p.user_mut().set_gid(gid);
        }
    }
    if !opts.additional_gids.is_empty() {
        let user = p.user_mut();
        let mut gids = user.additional_gids().clone().unwrap_or_default();
        gids.extend(&opts.additional_gids);
        user.set_additional_gids(Some(gids));
    }
    if !opts.caps.is_empty() {
        let added = opts
            .caps
            .iter()
            .map(|c| {
                serde_json::from_value::<Capability>(c.as_str().into())
                    .map_err(|_| format!("--cap {c}: not a capability"))
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut caps = p.capabilities().clone().unwrap_or_default();
        let add = |set: &Option<Capabilities>| {
            let mut set = set.clone().unwrap_or_default();
            set.extend(added.iter().copied());
            Some(set)
        };
        caps.set_bounding(add(caps.bounding()));
        caps.set_effective(add(caps.effective()));
        caps.set_permitted(add(caps.permitted()));
        // Ambient capabilities need inheritable ones: only a spec that has
        // some gets them, as with runc.
        if caps.inheritable().is_some() {
            caps.set_ambient(add(caps.ambient()));
        }
        p.set_capabilities(Some(caps));
    }
    if !opts.env.is_empty() {
        let mut env = p.env().clone().unwrap_or_default();
        for kv in &opts.env {
            let key = kv.split_once('=').map_or(kv.as_str(), |(k, _)| k);
            env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
            env.push(kv.clone());
        }
        p.set_env(Some(env));
    }
    if opts.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    Ok(p)
}

/// `process` as JSON in a memory file, rewound.
fn process_file(process: &Process) -> Result<std::fs::File> {
    use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
    let io = |source| Error::Io {
        path: "memfd:process.json".into(),
        source,
    };
    let fd =
        memfd_create(c"process.json", MemFdCreateFlag::MFD_CLOEXEC).map_err(|e| io(e.into()))?;
    let mut f = std::fs::File::from(fd);
    serde_json::to_writer(&mut f, process).map_err(|e| io(e.into()))?;
    f.seek(std::io::SeekFrom::Start(0)).map_err(io)?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn spec(process: serde_json::Value) -> Spec {
        serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": process,
        }))
        .unwrap()
    }

    fn exec(args: &[&str]) -> ExecOptions {
        ExecOptions {
            args: args.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn exec_inherits_the_spec_process_and_changes_only_what_is_given() {
        let s = spec(serde_json::json!({
            "user": {"uid": 1000, "gid": 1000, "additionalGids": [4]},
            "cwd": "/home/work",
            "args": ["sleep", "1000"],
            "env": ["PATH=/bin", "FOO=bar"],
            "terminal": true,
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        }));
        let p = exec_process(&s, &exec(&["sh"])).unwrap();
        assert_eq!(p.args().as_deref(), Some(&["sh".to_string()][..]));
        assert_eq!(p.user().uid(), 1000);
        assert_eq!(p.user().additional_gids().as_deref(), Some(&[4][..]));
        assert_eq!(p.cwd(), Path::new("/home/work"));
        assert_eq!(
            p.terminal(),
            Some(false),
            "the spec's terminal is not the exec's"
        );
        assert_eq!(p.rlimits(), s.process().as_ref().unwrap().rlimits());

        let opts = ExecOptions {
            env: vec!["FOO=baz".into(), "NEW=1".into()],
            cwd: Some("/tmp".into()),
            user: Some((0, Some(5))),
            additional_gids: vec![6],
            terminal: true,
            no_new_privs: true,
            ..exec(&["id"])
        };
        let p = exec_process(&s, &opts).unwrap();
        assert_eq!(
            p.env().as_deref(),
            Some(&["PATH=/bin".to_string(), "FOO=baz".into(), "NEW=1".into()][..])
        );
        assert_eq!((p.user().uid(), p.user().gid()), (0, 5));
        assert_eq!(p.user().additional_gids().as_deref(), Some(&[4, 6][..]));
        assert_eq!(p.cwd(), Path::new("/tmp"));
        assert_eq!(p.terminal(), Some(true));
        assert_eq!(p.no_new_privileges(), Some(true));
    }

    #[test]
    fn exec_caps_are_added_and_ambient_only_beside_inheritable() {
        let caps = |inheritable: bool| {
            let mut c = serde_json::json!({"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"],
                                           "permitted": ["CAP_KILL"]});
            if inheritable {
                c["inheritable"] = serde_json::json!(["CAP_KILL"]);
            }
            spec(serde_json::json!({"user": {"uid": 0, "gid": 0}, "cwd": "/",
                                    "capabilities": c}))
        };
        let opts = ExecOptions {
            caps: vec!["CAP_SYS_ADMIN".into(), "net_admin".into()],
            ..exec(&["sh"])
        };
        for inheritable in [false, true] {
            let p = exec_process(&caps(inheritable), &opts).unwrap();
            let c = p.capabilities().as_ref().unwrap();
            for set in [c.bounding(), c.effective(), c.permitted()] {
                let set = set.as_ref().unwrap();
                assert!(set.contains(&Capability::SysAdmin) && set.contains(&Capability::NetAdmin));
                assert!(set.contains(&Capability::Kill));
            }
            assert_eq!(
                c.ambient()
                    .as_ref()
                    .is_some_and(|a| a.contains(&Capability::SysAdmin)),
                inheritable
            );
        }
    }

    #[test]
    fn exec_refuses_what_it_cannot_run_naming_the_flag() {
        let s = spec(serde_json::json!({"user": {"uid": 0, "gid": 0}, "cwd": "/"}));
        let bad = |opts: ExecOptions| exec_process(&s, &opts).unwrap_err();
        assert_eq!(bad(exec(&[])), "no command given");
        let e = bad(ExecOptions {
            cwd: Some("tmp".into()),
            ..exec(&["sh"])
        });
        assert!(e.contains("--cwd tmp"), "{e}");
        let e = bad(ExecOptions {
            caps: vec!["CAP_NOPE".into()],
            ..exec(&["sh"])
        });
        assert!(e.contains("--cap CAP_NOPE"), "{e}");
    }
}
