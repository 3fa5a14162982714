//go:build !linux

package main

import (
	"errors"
	"time"
)

// epollAvailable reports whether -fanout-client=epoll can run here.
const epollAvailable = false

type epollGroup struct{}

func newEpollGroup() (*epollGroup, error) {
	return nil, errors.New("-fanout-client=epoll needs Linux; use -fanout-client=goroutine")
}

func (g *epollGroup) add(*lightWS, int, func([]byte, time.Time) bool) error { return nil }

func (g *epollGroup) run(time.Time) error { return nil }
