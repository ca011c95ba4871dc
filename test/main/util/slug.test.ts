import { describe, expect, it } from 'vitest'
import { slug } from '../../../src/main/util/slug'

describe('slug', () => {
  it('keeps letters and digits, lower-cased, between single hyphens', () => {
    expect(slug('  Capitals of Europe (v2)!  ', 'x')).toBe('capitals-of-europe-v2')
    expect(slug('Ünïcödé café', 'x')).toBe('unicode-cafe')
    expect(slug('中文 / 🙂', 'item')).toBe('item')
    expect(slug('', 'dataset')).toBe('dataset')
  })
  it('cuts a long name between words, never inside one nor before a hyphen', () => {
    // 40 characters end inside "fine-tuned": the cut goes back to the hyphen before it
    expect(slug('2026-12-04T23-20-18-run-c9cb6d (fine-tuned)', 'x')).toBe('2026-12-04t23-20-18-run-c9cb6d-fine')
    // the limit falls on a hyphen: the words before it whole, no hyphen left at the end
    expect(slug('abcd efgh', 'x', 4)).toBe('abcd')
    expect(slug('abcd efgh', 'x', 5)).toBe('abcd')
    // one long word: cut at the limit (going back would leave nothing)
    expect(slug('a'.repeat(50), 'x')).toBe('a'.repeat(40))
    expect(slug('ab ' + 'c'.repeat(50), 'x', 10)).toBe('ab-ccccccc')
    expect(slug('abcd ef gh', 'x', 7)).toBe('abcd-ef')
    expect(slug('abc defg', 'x', 4)).toBe('abc') // just after a hyphen
    // half the limit kept at least: back to a hyphen there, not before it
    expect(slug('abcd efghijk', 'x', 8)).toBe('abcd')
    expect(slug('abc defghijk', 'x', 8)).toBe('abc-defg')
    // short enough: whole
    expect(slug('abcd efgh', 'x', 9)).toBe('abcd-efgh')
    expect(slug('abcd efg', 'x', 8)).toBe('abcd-efg')
    expect(slug('a'.repeat(25) + ' bbbb', 'x')).toBe('a'.repeat(25) + '-bbbb')
  })
})
