// Command goq drives zeromicro/go-queue's dq (required as a module, not copied) for the
// interop test in tests/interop/test_goqueue.py.
//
//	goq produce -endpoints h:p,h:p,h:p -tube T -n N -delay 500ms -prefix P
//	    dq.NewProducer + Delay(body) N times; prints one id per line.
//	goq consume -endpoints ... -tube T -redis h:p -n N -timeout 30s
//	    dq.NewConsumer with the Redis guard; prints each body on its own line, exits after N.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/zeromicro/go-queue/dq"
	"github.com/zeromicro/go-zero/core/logx"
	"github.com/zeromicro/go-zero/core/stores/redis"
)

func nodes(endpoints, tube string) []dq.Beanstalk {
	var out []dq.Beanstalk
	for _, e := range strings.Split(endpoints, ",") {
		out = append(out, dq.Beanstalk{Endpoint: e, Tube: tube})
	}
	return out
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: goq produce|consume [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	endpoints := fs.String("endpoints", "127.0.0.1:11300,127.0.0.1:11301,127.0.0.1:11302", "beanstalkd nodes")
	tube := fs.String("tube", "goq", "tube")
	n := fs.Int("n", 10, "jobs")
	delay := fs.Duration("delay", 500*time.Millisecond, "delay of each job (produce)")
	prefix := fs.String("prefix", "go", "body prefix (produce)")
	redisAddr := fs.String("redis", "127.0.0.1:6379", "redis host:port (consume)")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after (consume)")
	_ = fs.Parse(os.Args[2:])
	logx.Disable()

	switch os.Args[1] {
	case "produce":
		p := dq.NewProducer(nodes(*endpoints, *tube))
		for i := 0; i < *n; i++ {
			id, err := p.Delay([]byte(fmt.Sprintf("%s-%d", *prefix, i)), *delay)
			if err != nil {
				fmt.Fprintln(os.Stderr, "delay:", err)
				os.Exit(1)
			}
			fmt.Println(id)
		}
		_ = p.Close()
	case "consume":
		c := dq.NewConsumer(dq.DqConf{
			Beanstalks: nodes(*endpoints, *tube),
			Redis:      redis.RedisConf{Host: *redisAddr, Type: redis.NodeType},
		})
		var mu sync.Mutex
		seen := 0
		go func() {
			time.Sleep(*timeout)
			fmt.Fprintf(os.Stderr, "timeout after %d of %d jobs\n", seen, *n)
			os.Exit(1)
		}()
		c.Consume(func(body []byte) {
			mu.Lock()
			defer mu.Unlock()
			fmt.Println(string(body))
			seen++
			if seen >= *n {
				os.Exit(0)
			}
		})
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", os.Args[1])
		os.Exit(2)
	}
}
