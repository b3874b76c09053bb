package textproc_test

import (
	"fmt"
	"log"

	"github.com/uniter-serve/uniter/textproc"
)

func ExampleTokenizer_Encode() {
	tk, err := textproc.New(textproc.Config{VocabPath: "testdata/vocab.txt", Lowercase: true, MaxLength: 16})
	if err != nil {
		log.Fatal(err)
	}
	enc, err := tk.Encode("Café, playing!")
	if err != nil {
		log.Fatal(err)
	}
	for _, t := range enc.Tokens {
		fmt.Printf("%-6s id=%-3d runes=[%d,%d) word=%d\n", t.Text, t.ID, t.Start, t.End, t.Word)
	}
	fmt.Println(enc.IDs())
	// Output:
	// [CLS]  id=2   runes=[0,0) word=-1
	// cafe   id=221 runes=[0,4) word=0
	// ,      id=16  runes=[4,5) word=1
	// play   id=213 runes=[6,10) word=2
	// ##ing  id=214 runes=[10,13) word=2
	// !      id=5   runes=[13,14) word=3
	// [SEP]  id=3   runes=[14,14) word=-1
	// [2 221 16 213 214 5 3]
}
