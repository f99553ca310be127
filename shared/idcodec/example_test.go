package idcodec_test

import (
	"fmt"

	"github.com/idgen/idgen/shared/idcodec"
)

func ExampleCompose() {
	id, err := idcodec.Compose(idcodec.Fields{TimestampMS: 1_764_000_000_000, Worker: 7, Shard: 2, Counter: 1001})
	if err != nil {
		panic(err)
	}
	fmt.Println(id)
	// Output: 019ab697-e800-8007-8200-0000000003e9
}

func ExampleParse() {
	id, err := idcodec.Parse("019AB697-E800-8007-8200-0000000003E9")
	if err != nil {
		panic(err)
	}
	f := id.Decompose()
	fmt.Println(id, f.TimestampMS, f.Worker, f.Shard, f.Counter)
	// Output: 019ab697-e800-8007-8200-0000000003e9 1764000000000 7 2 1001
}

func ExampleParse_notOurs() {
	_, err := idcodec.Parse("f47ac10b-58cc-4372-a567-0e02b2c3d479") // a UUIDv4
	fmt.Println(err)
	// Output: idcodec: not an idgen ID (version 8, variant 10)
}
