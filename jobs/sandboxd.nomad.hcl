# The Cloud Sandbox control plane on Nomad: three sandboxd servers on
# distinct hosts, Raft data on a host volume, discovered through Consul
# (BOOTSTRAP_EXPECT=3), placing sandboxes as Nomad jobs (PLACEMENT_DRIVER=nomad).
# See placement/DESIGN.md, "Running on Nomad".
#
#   sandboxd tls ca create -dir tls
#   sandboxd tls cert create -ca-cert tls/ca.pem -ca-key tls/ca-key.pem -name node -dir tls \
#     -hosts <the IP of every client that may run sandboxd>   # peers dial NOMAD_ADDR_raft
#   nomad var put nomad/jobs/sandboxd jwt_secret=$(openssl rand -hex 32) nomad_token=<token> \
#     api_keys=<key:user[:role],...> minio_access_key=<key> minio_secret_key=<secret> \
#     tls_ca=@tls/ca.pem tls_cert=@tls/node.pem tls_key=@tls/node-key.pem
#   nomad job run -var image=registry.example/cloud-sandbox/sandboxd:1.0 \
#     -var minio_endpoint=s3.internal:9000 jobs/sandboxd.nomad.hcl

variable "image" {
  type    = string
  default = "cloud-sandbox/sandboxd:latest"
}
variable "datacenters" {
  type    = list(string)
  default = ["*"]
}
# host:port of the S3-compatible store that keeps paused sandboxes' workspaces.
variable "minio_endpoint" {
  type    = string
  default = "minio.service.consul:9000"
}
variable "sandbox_image" {
  type    = string
  default = "cloud-sandbox/python:3.11"
}

job "sandboxd" {
  type        = "service"
  datacenters = var.datacenters

  # Rolling upgrades one server at a time: Raft keeps a quorum of 2 of 3.
  update {
    max_parallel      = 1
    health_check      = "checks"
    min_healthy_time  = "30s"
    healthy_deadline  = "5m"
    progress_deadline = "10m"
    auto_revert       = true
    stagger           = "30s"
  }

  group "sandboxd" {
    count = 3

    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    # A server keeps its Raft identity and log: it is restarted in place,
    # and rescheduled elsewhere only after a real failure.
    restart {
      attempts = 3
      interval = "5m"
      delay    = "10s"
      mode     = "delay"
    }

    volume "raft" {
      type      = "host"
      source    = "cloud-sandbox-raft"
      read_only = false
    }

    network {
      port "http" { static = 8080 }
      port "raft" { static = 7000 }
      port "ops" { static = 9090 }
    }

    service {
      name     = "cloud-sandbox-http"
      port     = "http"
      provider = "consul"
      tags     = ["api"]

      check {
        type     = "http"
        port     = "ops"
        path     = "/health"
        interval = "5s"
        timeout  = "2s"
      }
    }

    task "sandboxd" {
      driver = "docker"

      config {
        image = var.image
        ports = ["http", "raft", "ops"]
        args  = ["-data-dir", "/var/lib/cloud-sandbox"]
      }

      volume_mount {
        volume      = "raft"
        destination = "/var/lib/cloud-sandbox"
      }

      env {
        PLACEMENT_DRIVER   = "nomad"
        CLUSTER_NAME       = "cloud-sandbox"
        BOOTSTRAP_EXPECT   = "3"
        CONSUL_HTTP_ADDR   = "${attr.unique.network.ip-address}:8500"
        NODE_ID            = "${node.unique.name}"
        LISTEN_ADDR        = "0.0.0.0:8080"
        OPS_ADDR           = "0.0.0.0:9090"
        RAFT_ADDR          = "0.0.0.0:7000"
        RAFT_ADVERTISE     = "${NOMAD_ADDR_raft}"
        HTTP_ADVERTISE     = "${NOMAD_ADDR_http}"
        NOMAD_ADDR         = "http://${attr.unique.network.ip-address}:4646"
        NOMAD_DATACENTERS  = "*"
        SANDBOX_IMAGE      = var.sandbox_image
        SANDBOX_AGENT_PATH = "/opt/cloud-sandbox/bin/sandbox-agent"
        SANDBOX_MODE       = "production"
        # Pause archives in S3-compatible storage, so any of the three can
        # resume what another paused (a node's own disk would not do).
        MINIO_ENDPOINT     = var.minio_endpoint
        MINIO_BUCKET       = "cloud-sandbox-archives"
        MINIO_USE_SSL      = "true"
        # Mutual TLS on the Raft/RPC port: production refuses it plain.
        TLS_CA_FILE        = "${NOMAD_SECRETS_DIR}/tls/ca.pem"
        TLS_CERT_FILE      = "${NOMAD_SECRETS_DIR}/tls/node.pem"
        TLS_KEY_FILE       = "${NOMAD_SECRETS_DIR}/tls/node-key.pem"
      }

      template {
        destination = "secrets/tls/ca.pem"
        perms       = "0400"
        change_mode = "restart"
        data        = "{{ with nomadVar \"nomad/jobs/sandboxd\" }}{{ .tls_ca }}{{ end }}"
      }
      template {
        destination = "secrets/tls/node.pem"
        perms       = "0400"
        change_mode = "restart"
        data        = "{{ with nomadVar \"nomad/jobs/sandboxd\" }}{{ .tls_cert }}{{ end }}"
      }
      template {
        destination = "secrets/tls/node-key.pem"
        perms       = "0400"
        change_mode = "restart"
        data        = "{{ with nomadVar \"nomad/jobs/sandboxd\" }}{{ .tls_key }}{{ end }}"
      }

      # Secrets come from a Nomad Variable at nomad/jobs/sandboxd, readable
      # by this job only; rendered into the task's secrets/ dir as env.
      template {
        destination = "secrets/sandboxd.env"
        env         = true
        change_mode = "restart"
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/sandboxd" -}}
          JWT_SECRET={{ .jwt_secret }}
          NOMAD_TOKEN={{ .nomad_token }}
          API_KEYS={{ .api_keys }}
          MINIO_ACCESS_KEY={{ .minio_access_key }}
          MINIO_SECRET_KEY={{ .minio_secret_key }}
          {{- end }}
        EOT
      }

      resources {
        cpu    = 1000
        memory = 512
      }
    }
  }
}
