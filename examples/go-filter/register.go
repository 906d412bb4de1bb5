//go:build wasip1

package main

func init() { Filter().Register() }
