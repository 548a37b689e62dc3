package config

import (
	"bytes"
	"fmt"

	toml "github.com/pelletier/go-toml/v2"
)

// Print renders cfg as TOML that Load accepts and decodes back to an equal
// Config: every key, defaults included. Secrets such as
// delivery.smarthost_password are printed as they are.
func Print(cfg *Config) []byte {
	var b bytes.Buffer
	b.WriteString("# postyard effective configuration (defaults included)\n\n")
	enc := toml.NewEncoder(&b)
	if err := enc.Encode(cfg); err != nil {
		// Only strings, integers, booleans and TextMarshalers that cannot
		// fail: an error here is a programming error.
		panic(fmt.Sprintf("config: encoding: %v", err))
	}
	return b.Bytes()
}
