// Command session-manager is the guide's session-manager service: one node of the local three-node
// cluster that `go run ./cmd/scheduler & go run ./cmd/session-manager &
// go run ./cmd/gateway` starts from the repository root (every node serves
// the whole API; see README.md). Flags and environment variables are
// sandboxd's.
package main

import (
	"os"

	"github.com/cloud-sandbox/cloud-sandbox/cmd/internal/controlnode"
)

func main() {
	controlnode.Main("session-manager", os.Args[1:], controlnode.LocalNode("session-manager"))
}
