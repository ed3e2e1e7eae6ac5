package cluster_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/phonehome/phonehome/cluster"
	"github.com/phonehome/phonehome/store/storetest"
)

// BenchmarkLeaseRenew is one renewal by the holder: the statement every
// node runs every RenewEvery (5 s by default).
func BenchmarkLeaseRenew(b *testing.B) {
	for _, be := range storetest.Backends(b) {
		b.Run(be.Name(), func(b *testing.B) {
			st := be.Open(b)
			l, err := cluster.NewLease(st.Writer, st.Dialect, "maintenance", "a", time.Minute, cluster.LeaseOptions{})
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if ok, err := l.Campaign(context.Background()); !ok || err != nil {
					b.Fatal(ok, err)
				}
			}
		})
	}
}

// BenchmarkPresenceCount is one "N watching" read over 3 nodes × 1,000
// topics.
func BenchmarkPresenceCount(b *testing.B) {
	for _, be := range storetest.Backends(b) {
		b.Run(be.Name(), func(b *testing.B) {
			st := be.Open(b)
			ctx := context.Background()
			var p *cluster.Presence
			for node := range 3 {
				var err error
				p, err = cluster.NewPresence(st.Writer, st.Dialect, fmt.Sprint("node-", node), cluster.PresenceOptions{})
				if err != nil {
					b.Fatal(err)
				}
				for topic := range 1000 {
					p.Set(fmt.Sprint("pet:", topic), 1+topic%3)
				}
				if err := p.Flush(ctx); err != nil {
					b.Fatal(err)
				}
			}
			for b.Loop() {
				if n, err := p.Count(ctx, "pet:500"); n != 9 || err != nil {
					b.Fatal(n, err)
				}
			}
		})
	}
}
