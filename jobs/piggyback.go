package jobs

import (
	"cmp"
	"context"
	"slices"

	"github.com/jmoiron/sqlx"
)

// A recorded batch frees its jobs' slots, and the queue would then claim
// new jobs in a transaction of its own. Instead the outcome transaction
// claims them itself, after the outcomes and the workers' RecordTx writes:
// one commit where there were two, and claims as large as the batch, not
// as large as what freed up while the previous claim ran. A claim made
// here holds the same locks a queue's own claim holds (see fill), for the
// whole transaction: each queue's claimMu, then claimGate for reading, so a
// pause, scale or cancel waits for it, and a cancel sees its jobs already
// registered as running here.

// piggyback is the claim an outcome transaction makes.
type piggyback struct {
	queues  []*queue       // the batch's queues, by name; their claimMu held
	freed   map[*queue]int // slots the batch frees, per queue
	claimed map[*queue][]*Job
	runs    map[*queue][]*run
	locked  bool // claimGate is read-locked
}

// lockPiggyback takes the locks of a claim for the queues of batch, or
// returns nil when the engine is stopping (Stop waits on claimGate for a
// claim already under way, so none starts jobs once it waits for them).
func (e *Engine) lockPiggyback(batch []*attempt) *piggyback {
	p := &piggyback{freed: map[*queue]int{}}
	for _, a := range batch {
		if p.freed[a.queue] == 0 {
			p.queues = append(p.queues, a.queue)
		}
		p.freed[a.queue]++
	}
	// One order for every holder of several claimMu.
	slices.SortFunc(p.queues, func(a, b *queue) int { return cmp.Compare(a.name, b.name) })
	return p.lock(e)
}

// lock takes the claim locks of p's queues (in p.queues' order), then the
// claim gate, and returns p; nil, with nothing held, when the engine is
// stopping.
func (p *piggyback) lock(e *Engine) *piggyback {
	for _, q := range p.queues {
		q.claimMu.Lock()
	}
	e.claimGate.RLock()
	p.locked = true
	select {
	case <-e.stopping:
		p.unlock(e)
		return nil
	default:
	}
	return p
}

// lockInsertClaim takes the locks of a claim for queue, when this engine
// runs it, is started and not stopping, and the queue has a free slot;
// else it returns nil.
func (e *Engine) lockInsertClaim(queueName string) *piggyback {
	q, ok := e.queues[queueName]
	if !ok || q.freeAfter(0) <= 0 {
		return nil
	}
	e.startMu.Lock()
	started := e.started
	e.startMu.Unlock()
	if !started {
		return nil
	}
	p := &piggyback{queues: []*queue{q}, freed: map[*queue]int{}}
	return p.lock(e)
}

// unlock releases what lockPiggyback took and is still held.
func (p *piggyback) unlock(e *Engine) {
	if p == nil {
		return
	}
	if p.locked {
		e.claimGate.RUnlock()
		p.locked = false
	}
	for _, q := range p.queues {
		q.claimMu.Unlock()
	}
	p.queues = nil
}

// claimError is a claim's failure inside an outcome transaction.
type claimError struct{ err error }

func (c *claimError) Error() string { return "claim: " + c.err.Error() }
func (c *claimError) Unwrap() error { return c.err }

// claimPiggyback claims, in tx, as many jobs of each of p's queues as are
// free once the batch's outcomes commit (claimTx counts them).
func (e *Engine) claimPiggyback(ctx context.Context, tx *sqlx.Tx, p *piggyback) error {
	if p == nil {
		return nil
	}
	p.claimed = map[*queue][]*Job{}
	for _, q := range p.queues {
		n := q.freeAfter(p.freed[q])
		if n <= 0 {
			continue
		}
		jobs, err := e.claimTx(ctx, tx, q.name, n)
		if err != nil {
			return &claimError{err: err}
		}
		p.claimed[q] = jobs
	}
	return nil
}

// freeAfter is how many slots q has free once freed running jobs are done.
func (q *queue) freeAfter(freed int) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.paused {
		return 0
	}
	return q.limit - q.running + freed
}

// afterPiggyback runs once the claim committed: it registers the claimed
// jobs as running here and counts them in their queues before it lets go
// of the locks, as fill does.
func (e *Engine) afterPiggyback(p *piggyback) {
	if p == nil {
		return
	}
	p.runs = map[*queue][]*run{}
	for q, jobs := range p.claimed {
		p.runs[q] = e.register(jobs)
		q.add(len(jobs))
		e.running.Add(len(jobs))
	}
	p.unlock(e)
}

// startPiggyback starts the claimed jobs, after the batch's own
// afterRecord, and reports them.
func (e *Engine) startPiggyback(p *piggyback) {
	if p == nil {
		return
	}
	var ids []int64
	for q, jobs := range p.claimed {
		ids = append(ids, e.launch(q, jobs, p.runs[q])...)
	}
	e.changed(ids)
}
