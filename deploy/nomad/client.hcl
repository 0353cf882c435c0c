# Nomad client agent fragment for every node that runs Cloud Sandbox sandboxes
# (Nomad 1.6). Copy it into the client's config dir beside the rest of its
# configuration, e.g. /etc/nomad.d/cloud-sandbox.hcl; README.md says what
# else to install. `make nomad-dev` loads it into a dev agent, overriding only
# cni_config_dir (to cni/ beside it), the data dir and the bind address.

client {
  # CNI plugins: Debian's containernetworking-plugins installs them here
  # (upstream tarballs use /opt/cni/bin). Nomad's own bridge mode uses them too.
  cni_path = "/usr/lib/cni"
  # Where cni/cloud-sandbox-noegress.conflist is installed. Nomad reads the
  # networks in this directory when it starts (restart it after adding one);
  # a job asking for cni/cloud-sandbox-noegress is placed only on clients
  # that have it.
  cni_config_dir = "/opt/cni/config"

  # Client GC keeps Nomad's defaults. A destroyed sandbox's allocation stays
  # on the client as a directory with two small tmpfs mounts (secrets/,
  # private/) until GC: once more than gc_max_allocs (50) allocations are
  # tracked, every new one collects terminal ones, and disk/inode thresholds
  # collect early. Nothing of the sandbox's data is there (/workspace is a
  # Docker tmpfs, gone with the container), so the bound is all that matters.
}

plugin "docker" {
  config {
    # The sandbox-agent binary is bind-mounted read-only from the host
    # (/opt/cloud-sandbox/bin/sandbox-agent). Not needed if sandboxd runs with
    # SANDBOX_AGENT_ARTIFACT.
    volumes {
      enabled = true
    }

    # Nomad's default (Docker's default set without net_raw) plus net_admin.
    # Sandboxes drop all of them (cap_drop = ["ALL"]). net_admin is for the
    # "egress" prestart task of a sandbox allowed egress: it holds it only in
    # the allocation's network namespace, installs that sandbox's firewall
    # and exits before the sandbox starts. On a shared client, Nomad ACLs
    # must keep other jobs from asking for it.
    allow_caps = ["audit_write", "chown", "dac_override", "fowner", "fsetid", "kill", "mknod",
                  "net_bind_service", "setfcap", "setgid", "setpcap", "setuid", "sys_chroot",
                  "net_admin"]

    # runsc only if sandboxd runs with SANDBOX_RUNTIME=runsc (and gVisor is
    # installed as a Docker runtime); listing it costs nothing otherwise.
    allow_runtimes = ["runc", "runsc"]

    # Every group network (bridge and CNI modes) starts an infra container
    # first. Nomad's default is a registry image (gcr.io/google_containers/pause);
    # this one is built locally (pause-image.sh) and never pulled: Nomad uses
    # an infra image that is already present without contacting a registry.
    # The short timeout makes a client that lacks it fail fast and visibly.
    infra_image              = "cloud-sandbox/pause:1"
    infra_image_pull_timeout = "30s"

    gc {
      # Never delete images: nothing can be pulled back, and the sandbox and
      # infra images would vanish with the last allocation that used them.
      image = false
      # Remove a sandbox's container with its task, and any container Nomad
      # created but lost track of (e.g. across a client crash).
      container = true
      dangling_containers {
        enabled        = true
        period         = "5m"
        creation_grace = "5m"
      }
    }

    # Name the job and task on every container, so `docker ps` on a client
    # shows whose sandbox is whose (the driver adds cloud-sandbox.* labels).
    extra_labels = ["job_name", "task_group_name", "task_name", "namespace", "node_name"]
  }
}
