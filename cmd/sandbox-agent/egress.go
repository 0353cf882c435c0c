package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/cloud-sandbox/cloud-sandbox/placement/egress"
)

// installEgress runs the agent as the egress helper (egress.HelperArg): a
// short-lived process that shares only the sandbox's network namespace,
// holds CAP_NET_ADMIN there, installs the rules given as JSON and exits.
// The sandbox's own processes never hold that capability.
func installEgress(args []string) {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: sandbox-agent egress '<rules as JSON>'")
		os.Exit(2)
	}
	var r egress.Rules
	if err := json.Unmarshal([]byte(args[0]), &r); err != nil {
		fmt.Fprintf(os.Stderr, "sandbox-agent egress: rules: %v\n", err)
		os.Exit(2)
	}
	if r.Open {
		// The sandbox shares this namespace's resolv.conf: allow DNS to
		// the servers it will ask, and only on port 53.
		servers, err := egress.ReadResolvers("/etc/resolv.conf")
		if err != nil {
			fmt.Fprintf(os.Stderr, "sandbox-agent egress: %v (continuing without DNS)\n", err)
		}
		r = r.WithResolvers(servers)
	}
	if err := egress.Install(r); err != nil {
		fmt.Fprintf(os.Stderr, "sandbox-agent egress: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("egress rules installed: open=%v allow=%d deny=%d resolvers=%v\n", r.Open, len(r.Allow), len(r.Deny), r.Resolvers)
	os.Exit(0)
}
