// Command goqueue runs zeromicro/go-queue as shipped, as the baseline that
// bench/compare.py sets brokerq against. One binary, one subcommand per measure;
// each prints exactly one JSON line on stdout:
//
//	{"measure": ..., "count": N, "elapsed_s": ..., ...}
//
// Subcommands:
//
//	kq-push     kq.NewPusher(brokers, topic) with its defaults (kafka-go writer, acks=0,
//	            snappy, LeastBytes, 1 MiB / 1 s chunk executor); Push N values, Close.
//	kq-consume  kq.MustNewQueue with Processors 8 and a no-op handler; exits at N.
//	dq-delay    dq.NewProducer over 3 nodes (writes 3, needs 2); Delay N bodies.
//	dq-consume  dq.NewConsumer over 3 nodes with the Redis guard; exits at N.
//	dq-at       consumer + producer in one process: At() N jobs spread over a window,
//	            the handler records lateness = handle time - target time.
//
// Nothing here is go-queue's code: it is required as a module (see go.mod).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zeromicro/go-queue/dq"
	"github.com/zeromicro/go-queue/kq"
	"github.com/zeromicro/go-zero/core/logx"
	"github.com/zeromicro/go-zero/core/service"
	"github.com/zeromicro/go-zero/core/stores/redis"
)

func emit(m map[string]any) {
	b, _ := json.Marshal(m)
	fmt.Println(string(b))
}

func die(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "goqueue: "+format+"\n", args...)
	os.Exit(2)
}

func payload(size int, i int) string {
	s := strconv.Itoa(i) + ":"
	if len(s) >= size {
		return s
	}
	return s + strings.Repeat("x", size-len(s))
}

func quiet() {
	logx.DisableStat()
	logx.SetLevel(logx.ErrorLevel)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// counter records the first and the N-th handled message and closes done at N.
type counter struct {
	n       int64
	seen    atomic.Int64
	first   atomic.Int64
	last    atomic.Int64
	done    chan struct{}
	started time.Time
}

func newCounter(n int) *counter {
	return &counter{n: int64(n), done: make(chan struct{}), started: time.Now()}
}

func (c *counter) hit() {
	now := time.Now().UnixNano()
	k := c.seen.Add(1)
	if k == 1 {
		c.first.Store(now)
	}
	if k == c.n {
		c.last.Store(now)
		close(c.done)
	}
}

func (c *counter) wait(measure string, timeout time.Duration, extra map[string]any) {
	select {
	case <-c.done:
	case <-time.After(timeout):
		die("%s: timed out after %s with %d of %d", measure, timeout, c.seen.Load(), c.n)
	}
	first, last := c.first.Load(), c.last.Load()
	m := map[string]any{
		"measure":     measure,
		"count":       c.n,
		"elapsed_s":   float64(last-first) / 1e9, // first handled -> N-th handled
		"total_s":     float64(last-c.started.UnixNano()) / 1e9,
		"implementer": "go-queue",
	}
	for k, v := range extra {
		m[k] = v
	}
	emit(m)
	os.Exit(0)
}

func kqPush(args []string) {
	fs := flag.NewFlagSet("kq-push", flag.ExitOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "")
	topic := fs.String("topic", "", "")
	n := fs.Int("n", 100000, "")
	size := fs.Int("size", 100, "")
	_ = fs.Parse(args)
	if *topic == "" {
		die("kq-push: -topic is required")
	}
	quiet()
	value := payload(*size, 0)
	p := kq.NewPusher(splitList(*brokers), *topic)
	ctx := context.Background()
	start := time.Now()
	for i := 0; i < *n; i++ {
		if err := p.Push(ctx, value); err != nil {
			die("push: %v", err)
		}
	}
	if err := p.Close(); err != nil { // flushes the chunk executor, closes the writer
		die("close: %v", err)
	}
	emit(map[string]any{
		"measure": "kq.push", "count": *n, "size": *size,
		"elapsed_s": time.Since(start).Seconds(), "implementer": "go-queue",
		"acks": 0, "note": "go-queue Pusher as shipped: kafka-go writer RequiredAcks=0, errors only logged",
	})
}

func kqConsume(args []string) {
	fs := flag.NewFlagSet("kq-consume", flag.ExitOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "")
	topic := fs.String("topic", "", "")
	group := fs.String("group", "", "")
	n := fs.Int("n", 100000, "")
	processors := fs.Int("processors", 8, "")
	timeout := fs.Duration("timeout", 120*time.Second, "")
	_ = fs.Parse(args)
	if *topic == "" || *group == "" {
		die("kq-consume: -topic and -group are required")
	}
	quiet()
	// KqConf's documented defaults, spelled out (they are only applied by conf.Load).
	c := kq.KqConf{
		ServiceConf: service.ServiceConf{Name: "bench", Log: logx.LogConf{Mode: "console", Level: "error"}},
		Brokers:     splitList(*brokers),
		Group:       *group,
		Topic:       *topic,
		Offset:      "first",
		Conns:       1,
		Consumers:   8,
		Processors:  *processors,
		MinBytes:    10240,
		MaxBytes:    10485760,
		ForceCommit: true,
	}
	cnt := newCounter(*n)
	q := kq.MustNewQueue(c, kq.WithHandle(func(ctx context.Context, k, v string) error {
		cnt.hit()
		return nil
	}))
	go q.Start()
	cnt.wait("kq.consume", *timeout, map[string]any{"processors": *processors})
}

func beanstalks(endpoints, tube string) []dq.Beanstalk {
	var bs []dq.Beanstalk
	for _, e := range splitList(endpoints) {
		bs = append(bs, dq.Beanstalk{Endpoint: e, Tube: tube})
	}
	return bs
}

func dqDelay(args []string) {
	fs := flag.NewFlagSet("dq-delay", flag.ExitOnError)
	endpoints := fs.String("endpoints", "127.0.0.1:11300,127.0.0.1:11301,127.0.0.1:11302", "")
	tube := fs.String("tube", "", "")
	n := fs.Int("n", 20000, "")
	size := fs.Int("size", 100, "")
	delay := fs.Duration("delay", time.Second, "")
	_ = fs.Parse(args)
	if *tube == "" {
		die("dq-delay: -tube is required")
	}
	quiet()
	p := dq.NewProducer(beanstalks(*endpoints, *tube))
	start := time.Now()
	for i := 0; i < *n; i++ {
		if _, err := p.Delay([]byte(payload(*size, i)), *delay); err != nil {
			die("delay: %v", err)
		}
	}
	el := time.Since(start).Seconds()
	_ = p.Close()
	emit(map[string]any{"measure": "dq.delay", "count": *n, "size": *size,
		"elapsed_s": el, "implementer": "go-queue", "nodes": len(splitList(*endpoints))})
}

func redisConf(addr string) redis.RedisConf {
	return redis.RedisConf{Host: addr, Type: redis.NodeType}
}

func dqConsume(args []string) {
	fs := flag.NewFlagSet("dq-consume", flag.ExitOnError)
	endpoints := fs.String("endpoints", "127.0.0.1:11300,127.0.0.1:11301,127.0.0.1:11302", "")
	tube := fs.String("tube", "", "")
	redisAddr := fs.String("redis", "127.0.0.1:6379", "")
	n := fs.Int("n", 20000, "")
	timeout := fs.Duration("timeout", 120*time.Second, "")
	_ = fs.Parse(args)
	if *tube == "" {
		die("dq-consume: -tube is required")
	}
	quiet()
	c := dq.NewConsumer(dq.DqConf{Beanstalks: beanstalks(*endpoints, *tube), Redis: redisConf(*redisAddr)})
	cnt := newCounter(*n)
	go c.Consume(func(body []byte) { cnt.hit() })
	cnt.wait("dq.consume", *timeout, map[string]any{"nodes": len(splitList(*endpoints))})
}

func dqAt(args []string) {
	fs := flag.NewFlagSet("dq-at", flag.ExitOnError)
	endpoints := fs.String("endpoints", "127.0.0.1:11300,127.0.0.1:11301,127.0.0.1:11302", "")
	tube := fs.String("tube", "", "")
	redisAddr := fs.String("redis", "127.0.0.1:6379", "")
	n := fs.Int("n", 2000, "")
	lead := fs.Duration("lead", 2*time.Second, "first target = now + lead")
	spread := fs.Duration("spread", 5*time.Second, "targets spread evenly over this window")
	_ = fs.Parse(args)
	if *tube == "" {
		die("dq-at: -tube is required")
	}
	quiet()
	var mu sync.Mutex
	late := make([]float64, 0, *n)
	cnt := newCounter(*n)
	c := dq.NewConsumer(dq.DqConf{Beanstalks: beanstalks(*endpoints, *tube), Redis: redisConf(*redisAddr)})
	go c.Consume(func(body []byte) {
		now := time.Now().UnixNano()
		s := string(body)
		if i := strings.IndexByte(s, ':'); i > 0 {
			s = s[:i]
		}
		target, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return
		}
		mu.Lock()
		late = append(late, float64(now-target)/1e6)
		mu.Unlock()
		cnt.hit()
	})
	p := dq.NewProducer(beanstalks(*endpoints, *tube))
	base := time.Now().Add(*lead)
	for i := 0; i < *n; i++ {
		at := base.Add(time.Duration(int64(*spread) * int64(i) / int64(*n)))
		body := strconv.FormatInt(at.UnixNano(), 10) + ":" + strconv.Itoa(i)
		if _, err := p.At([]byte(body), at); err != nil {
			die("at: %v", err)
		}
	}
	select {
	case <-cnt.done:
	case <-time.After(*lead + *spread + 30*time.Second):
		die("dq-at: timed out with %d of %d", cnt.seen.Load(), *n)
	}
	mu.Lock()
	defer mu.Unlock()
	sort.Float64s(late)
	early := 0
	for _, v := range late {
		if v < 0 {
			early++
		}
	}
	pct := func(q float64) float64 {
		if len(late) == 0 {
			return math.NaN()
		}
		i := int(math.Ceil(q*float64(len(late)))) - 1
		if i < 0 {
			i = 0
		}
		return late[i]
	}
	emit(map[string]any{
		"measure": "dq.at", "count": *n, "implementer": "go-queue",
		"lateness_ms_p50": pct(0.50), "lateness_ms_p99": pct(0.99),
		"lateness_ms_max": late[len(late)-1], "lateness_ms_min": late[0], "early": early,
		"elapsed_s": (*lead + *spread).Seconds(),
	})
	os.Exit(0)
}

func main() {
	if len(os.Args) < 2 {
		die("usage: goqueue kq-push|kq-consume|dq-delay|dq-consume|dq-at [flags]")
	}
	args := os.Args[2:]
	switch os.Args[1] {
	case "kq-push":
		kqPush(args)
	case "kq-consume":
		kqConsume(args)
	case "dq-delay":
		dqDelay(args)
	case "dq-consume":
		dqConsume(args)
	case "dq-at":
		dqAt(args)
	default:
		die("unknown subcommand %q", os.Args[1])
	}
}
