// Command sandboxd is one Cloud Sandbox control node: the REST API, a Raft
// node of the control cluster, and (while it leads) the reconciler that
// places sandboxes. `sandboxd -h` lists its flags; `sandboxd tls ...`
// creates the cluster CA and node certificates for mutual TLS.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/cloud-sandbox/cloud-sandbox/cmd/internal/controlnode"
	"github.com/cloud-sandbox/cloud-sandbox/cmd/internal/tlsgen"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "tls" {
		if err := tlsgen.Main(os.Args[2:], os.Stdout, os.Stderr); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return
			}
			fmt.Fprintf(os.Stderr, "sandboxd tls: %v\n", err)
			os.Exit(2)
		}
		return
	}
	controlnode.Main("sandboxd", os.Args[1:], controlnode.Defaults{})
}
