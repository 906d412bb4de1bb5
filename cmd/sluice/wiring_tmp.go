package main

import (
	"context"
	"errors"
)

// devInfo is what `sluice dev` prints once ready.
type devInfo struct {
	MCPURL string
	Key    string
}

func (s *session) runAgent(ctx context.Context) error { return errors.New("agent: not wired yet") }
func (s *session) runRelay(ctx context.Context) error { return errors.New("relay: not wired yet") }
func (s *session) runDev(ctx context.Context) error   { return errors.New("dev: not wired yet") }
