// etcd, at the version k8s.io/kubernetes itself depends on (go.etcd.io/etcd/server/v3).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
