"""Go's concurrent prime sieve: a chain of filter goroutines, one per prime found.

python examples/prime_sieve.py [n]      # the first n primes (default 25)
"""

import sys

import goroutines as gr


async def generate(ch):
    for i in range(2, sys.maxsize):
        await ch.send(i)  # 2, 3, 4, ... until the program ends


async def filter_multiples(src, dst, prime):
    async for i in src:
        if i % prime != 0:
            await dst.send(i)


async def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 25
    ch = gr.Chan()
    gr.go(generate, ch)
    primes = []
    for _ in range(n):
        prime = await ch.recv()
        primes.append(prime)
        ch1 = gr.Chan()
        gr.go(filter_multiples, ch, ch1, prime)  # the next stage of the chain
        ch = ch1
    print(" ".join(map(str, primes)))  # main returns: the remaining goroutines are closed


if __name__ == "__main__":
    gr.run(main)
