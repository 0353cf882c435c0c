# The job the nomad placement driver registers for one sandbox
# (placement/nomad/job.go builds it in Go; placement/nomad/jobspec_test.go
# checks field by field that this file and the driver agree).
# Render it by hand to debug a client:  nomad job run -var sandbox_id=dbg1 ...

variable "sandbox_id" { type = string }
variable "cluster" {
  type    = string
  default = "cloud-sandbox"
}
variable "job_prefix" {
  type    = string
  default = "cs-cloud-sandbox"
}
variable "datacenters" {
  type    = list(string)
  default = ["*"]
}
variable "image" { type = string }
# CPU in MHz: the request's CPU count x NOMAD_CPU_MHZ_PER_CORE (default 1000).
variable "cpu_mhz" {
  type    = number
  default = 1000
}
variable "memory_mb" {
  type    = number
  default = 512
}
variable "disk_mb" {
  type    = number
  default = 512
}
variable "tmp_mb" {
  type    = number
  default = 64
}
variable "pids_limit" {
  type    = number
  default = 256
}
# "bridge" for sandboxes with egress, "cni/cloud-sandbox-noegress" without.
variable "network_mode" {
  type    = string
  default = "cni/cloud-sandbox-noegress"
}
variable "agent_path" {
  type    = string
  default = "/opt/cloud-sandbox/bin/sandbox-agent"
}
variable "agent_port" {
  type    = number
  default = 7777
}
# Per-sandbox random bearer secret of the agent's TCP listener.
variable "agent_secret" { type = string }
# The agent's TLS certificate and key (PEM), made per sandbox; sandboxd pins
# the certificate's SHA-256 (placement/DESIGN.md).
variable "agent_tls_cert" { type = string }
variable "agent_tls_key" { type = string }

job "sandbox" {
  id          = "${var.job_prefix}-${var.sandbox_id}"
  name        = "${var.job_prefix}-${var.sandbox_id}"
  type        = "batch"
  priority    = 50
  datacenters = var.datacenters

  meta {
    cloud_sandbox_cluster = var.cluster
    sandbox_id            = var.sandbox_id
    cloud_sandbox_managed = "true"
  }

  group "sandbox" {
    count = 1

    # Nomad never restarts or replaces a sandbox: the control plane's
    # reconciler marks it failed and the pool replaces it.
    restart {
      attempts = 0
      mode     = "fail"
    }
    reschedule {
      attempts  = 0
      unlimited = false
    }
    # No disconnect block: Nomad 1.6 refuses it (the driver adds
    # disconnect { replace = false } only when every client runs >= 1.8).
    # A lost allocation is replaced by 1.6; the driver reports the sandbox
    # not running all the same and the reconciler replaces it.

    # Holds only Nomad's copy of the task's logs: the agent refuses writes
    # outside /workspace and /tmp. Must exceed the log storage below.
    ephemeral_disk {
      size = 32
    }

    network {
      mode = var.network_mode
      port "agent" {
        to = var.agent_port
      }
    }

    task "sandbox" {
      driver       = "docker"
      user         = "1000:1000"
      kill_timeout = "5s"

      logs {
        max_files     = 2
        max_file_size = 5
      }

      config {
        image           = var.image
        force_pull      = false
        entrypoint      = ["/.sandbox/agent"]
        args            = ["-listen", "tcp://0.0.0.0:${var.agent_port}", "-secret-file", "/secrets/agent-secret", "-workdir", "/workspace", "-landlock", "on"]
        work_dir        = "/workspace"
        ports           = ["agent"]
        cap_drop        = ["ALL"]
        readonly_rootfs = true
        pids_limit      = var.pids_limit
        security_opt    = ["no-new-privileges"]
        ipc_mode        = "private"
        init            = false
        privileged      = false
        cpu_hard_limit  = true
        shm_size        = var.tmp_mb * 1048576

        labels = {
          "cloud-sandbox.cluster" = var.cluster
          "cloud-sandbox.sandbox" = var.sandbox_id
          "cloud-sandbox.managed" = "true"
        }

        mount {
          type     = "bind"
          source   = var.agent_path
          target   = "/.sandbox/agent"
          readonly = true
        }
        mount {
          type     = "tmpfs"
          target   = "/workspace"
          readonly = false
          tmpfs_options {
            size = var.disk_mb * 1048576
            mode = 1023 # 01777: docker's tmpfs takes no uid
          }
        }
        mount {
          type     = "tmpfs"
          target   = "/tmp"
          readonly = false
          tmpfs_options {
            size = var.tmp_mb * 1048576
            mode = 1023
          }
        }

        logging {
          type = "json-file"
          config {
            max-size = "1m"
            max-file = "2"
          }
        }
      }

      template {
        data            = var.agent_secret
        destination     = "secrets/agent-secret"
        perms           = "0400"
        uid             = 1000
        gid             = 1000
        change_mode     = "noop"
        left_delimiter  = "[[nomad-no-template"
        right_delimiter = "nomad-no-template]]"
      }

      template {
        data            = var.agent_tls_cert
        destination     = "secrets/agent-cert.pem"
        perms           = "0400"
        uid             = 1000
        gid             = 1000
        change_mode     = "noop"
        left_delimiter  = "[[nomad-no-template"
        right_delimiter = "nomad-no-template]]"
      }

      template {
        data            = var.agent_tls_key
        destination     = "secrets/agent-key.pem"
        perms           = "0400"
        uid             = 1000
        gid             = 1000
        change_mode     = "noop"
        left_delimiter  = "[[nomad-no-template"
        right_delimiter = "nomad-no-template]]"
      }

      env {
        SANDBOX_MEMORY_GUARD = "on"
      }

      resources {
        cpu        = var.cpu_mhz
        # The user's memory plus its tmpfs (/workspace, /tmp, /dev/shm), whose
        # pages the kernel charges to this cgroup; the agent keeps processes
        # to memory_mb.
        memory     = var.memory_mb + var.disk_mb + 2 * var.tmp_mb
        memory_max = var.memory_mb + var.disk_mb + 2 * var.tmp_mb
      }
    }
  }
}
