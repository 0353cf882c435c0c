// Command sandboxd is one Cloud Sandbox control node: the REST API, a Raft
// node of the control cluster, and (while it leads) the reconciler that
// places sandboxes. `sandboxd -h` lists its flags.
package main

import (
	"os"

	"github.com/cloud-sandbox/cloud-sandbox/cmd/internal/controlnode"
)

func main() {
	controlnode.Main("sandboxd", os.Args[1:], controlnode.Defaults{})
}
