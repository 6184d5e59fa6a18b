//go:build !linux

package storetest

import "errors"

func mount(string, string) error { return errors.New("tmpfs mounts need Linux") }

func unmount(string) error { return nil }
