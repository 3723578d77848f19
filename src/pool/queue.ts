/**
 * The pool's task queue: lower priority numbers run first, FIFO within a priority. Internal.
 *
 * Most pools use one priority, so a single ring buffer serves it; other priorities get their own ring, kept in a
 * sorted list. Removal (a queued task aborted) is O(1): the slot is marked dead and skipped on the way out.
 */

export interface Queueable {
  priority: number;
  /** Set by the queue; cleared when removed. */
  queued: boolean;
}

class Ring<T> {
  #items: (T | undefined)[] = new Array(16);
  #head = 0;
  #length = 0;

  get length(): number {
    return this.#length;
  }

  push(item: T): void {
    if (this.#length === this.#items.length) this.#grow();
    this.#items[(this.#head + this.#length) & (this.#items.length - 1)] = item;
    this.#length++;
  }

  unshift(item: T): void {
    if (this.#length === this.#items.length) this.#grow();
    this.#head = (this.#head - 1) & (this.#items.length - 1);
    this.#items[this.#head] = item;
    this.#length++;
  }

  first(): T | undefined {
    return this.#length === 0 ? undefined : this.#items[this.#head];
  }

  shift(): T | undefined {
    if (this.#length === 0) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head] = undefined;
    this.#head = (this.#head + 1) & (this.#items.length - 1);
    this.#length--;
    return item;
  }

  #grow(): void {
    const next: (T | undefined)[] = new Array(this.#items.length * 2);
    for (let i = 0; i < this.#length; i++) next[i] = this.#items[(this.#head + i) & (this.#items.length - 1)];
    this.#items = next;
    this.#head = 0;
  }
}

export class TaskQueue<T extends Queueable> {
  /** Rings in ascending priority order. */
  #rings: { priority: number; ring: Ring<T> }[] = [];
  #size = 0;

  /** Live (not removed) tasks in the queue. */
  get size(): number {
    return this.#size;
  }

  push(task: T): void {
    this.#ring(task.priority).push(task);
    task.queued = true;
    this.#size++;
  }

  /** Puts a task back at the front of its priority (it was dispatched but never started). */
  unshift(task: T): void {
    this.#ring(task.priority).unshift(task);
    task.queued = true;
    this.#size++;
  }

  shift(): T | undefined {
    for (const { ring } of this.#rings) {
      while (ring.length > 0) {
        const task = ring.shift()!;
        if (!task.queued) continue;
        task.queued = false;
        this.#size--;
        return task;
      }
    }
    return undefined;
  }

  /** The task `shift()` would return, left in place. */
  peek(): T | undefined {
    for (const { ring } of this.#rings) {
      while (ring.length > 0) {
        const task = ring.first()!;
        if (task.queued) return task;
        ring.shift();
      }
    }
    return undefined;
  }

  /** Removes a task in O(1); its slot is skipped later. */
  remove(task: T): boolean {
    if (!task.queued) return false;
    task.queued = false;
    this.#size--;
    return true;
  }

  #ring(priority: number): Ring<T> {
    const rings = this.#rings;
    // Fast path: the one priority most pools use.
    if (rings.length > 0 && rings[0]!.priority === priority) return rings[0]!.ring;
    let i = 0;
    while (i < rings.length && rings[i]!.priority < priority) i++;
    if (i < rings.length && rings[i]!.priority === priority) return rings[i]!.ring;
    const ring = new Ring<T>();
    rings.splice(i, 0, { priority, ring });
    return ring;
  }
}
