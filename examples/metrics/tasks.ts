/** Fibonacci the slow way: a stand-in for CPU work that belongs on a thread. */
export function fib(n: number): number {
  return n < 2 ? n : fib(n - 1) + fib(n - 2);
}
