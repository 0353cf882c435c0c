// Package docker is the development placement driver: every sandbox is a
// hardened container on the local Docker daemon, and the control plane talks
// to the sandbox-agent inside it over a unix socket in a per-sandbox host
// directory, so a sandbox needs no network at all.
//
// # Hardening, and why
//
// A sandbox runs code an AI agent wrote; we assume it is hostile. Each
// container gets:
//
//   - User 1000:1000 by number, so it is never root even in an image that
//     has no such user (the real python:3.11-slim has none).
//   - CapDrop ALL and no-new-privileges: no capability, and no setuid binary
//     can hand one back.
//   - A read-only root file system, with size-limited tmpfs on /workspace
//     (Resources.DiskMB, owned by 1000) and /tmp (Config.TmpSizeMB), both
//     nosuid,nodev. Writes land in memory the memory cgroup accounts for, and
//     a full disk on the host cannot be caused from inside.
//   - A pids limit (a fork bomb stops at Config.PidsLimit processes), a
//     memory limit with swap equal to it (no swap), a CPU quota.
//   - Network "none" unless the sandbox asked for egress (then the default
//     bridge): only loopback otherwise.
//   - No Docker socket, not privileged, a private IPC namespace, and a
//     positive OOM score so the host's OOM killer picks a sandbox before the
//     control plane.
//   - The agent binary bind-mounted read-only at /.sandbox/agent as the
//     entrypoint, so it is PID 1 (Init false: the agent reaps and forwards
//     signals itself) and works in any image with no preparation.
//   - A bounded json-file log, so a chatty agent cannot fill the host disk.
//   - Labels cloud-sandbox.cluster, cloud-sandbox.sandbox and
//     cloud-sandbox.managed, so List finds every container a cluster owns
//     and orphans of a crashed control node can be found and removed.
//
// The agent socket lives in StateDir/<id>, bind-mounted at /run/sandbox. The
// directory is created 0700 and owned by 1000 so the agent can bind its
// socket there; once the agent answers, the driver takes it back (root, 0700)
// so code in the sandbox cannot write to the host's disk through it. The
// directory's permissions are the access control, which is why the agent
// needs no secret in this mode.
//
// /dev/shm stays writable (POSIX semaphores, Python multiprocessing need it);
// it is a private tmpfs of Config.TmpSizeMB whose pages count against the
// sandbox's memory limit.
package docker
