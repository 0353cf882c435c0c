package main

import (
	"os"
	"os/signal"
	"syscall"
)

// pauseArg selects pause mode: "sandbox-agent pause" is the infra ("pause")
// container of a Nomad allocation's network namespace (deploy/nomad builds
// the cloud-sandbox/pause image from this binary). It holds the namespace
// open, reaps any child handed to it, and exits 0 on SIGTERM or SIGINT.
// Nothing else runs: no listener, no flags, no files.
const pauseArg = "pause"

func pause() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
