// Package bindingtest holds helpers for testing binding.Binding
// implementations.
package bindingtest

import (
	"context"
	"time"

	"github.com/sluicemcp/sluice/engine/binding"
)

// Collect runs b.Do with a 20 s deadline and returns every reply, handing
// each to emit (when not nil) as it arrives.
func Collect(b binding.Binding, req *binding.Request, emit func(*binding.Reply)) ([]*binding.Reply, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []*binding.Reply
	err := b.Do(ctx, req, func(r *binding.Reply) error {
		out = append(out, r)
		if emit != nil {
			emit(r)
		}
		return nil
	})
	return out, err
}
