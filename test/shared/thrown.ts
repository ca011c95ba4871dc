/** The message of what `f` throws, or "accepted" when it returns: for asserting a refusal word for word. */
export function thrownMessage(f: () => unknown): string {
  try {
    f()
  } catch (e) {
    return (e as Error).message
  }
  return 'accepted'
}
