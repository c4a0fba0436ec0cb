import { afterEach, describe, expect, it } from 'vitest';
import { setLocale } from './locale.svelte';
import { describeEvent } from './system';
import type { EventView } from './types';

const zhang = { id: 41, name: '张伟' };
const li = { id: 7, name: '李娜' };
const wang = { id: 40, name: '王芳' };
const strip = (s: string) => s.replace(/[\u2068\u2069]/g, '');
const event = (e: Partial<EventView>): EventView => ({ kind: 'unknown', actor: zhang, users: [], name: '', role: 'member', ...e });

describe('group events in the reader’s language', () => {
  afterEach(() => setLocale('en'));

  it('names people, never user ids, in Chinese', () => {
    setLocale('zh-CN');
    const created = describeEvent(event({ kind: 'group_created', name: '项目组', users: [li, wang] }), 99);
    expect(strip(created)).toBe('张伟 创建了群聊“项目组”，并邀请 李娜、王芳 加入');
    expect(created).not.toMatch(/#\d/);
    expect(strip(describeEvent(event({ kind: 'members_added', users: [wang] }), 99))).toBe('张伟 邀请 王芳 加入了群聊');
    expect(strip(describeEvent(event({ kind: 'member_removed', users: [li] }), 99))).toBe('张伟 将 李娜 移出了群聊');
    expect(strip(describeEvent(event({ kind: 'member_left', users: [li] }), 99))).toBe('李娜 退出了群聊');
    expect(strip(describeEvent(event({ kind: 'renamed', name: '发布组' }), 99))).toBe('张伟 将群名改为“发布组”');
    expect(strip(describeEvent(event({ kind: 'role_changed', users: [li], role: 'admin' }), 99))).toBe('张伟 将 李娜 设为管理员');
  });

  it('says "you" for the reader, in English', () => {
    setLocale('en');
    expect(strip(describeEvent(event({ kind: 'members_added', users: [li] }), zhang.id))).toBe('You added 李娜');
    expect(strip(describeEvent(event({ kind: 'members_added', users: [li] }), li.id))).toBe('张伟 added you');
    expect(strip(describeEvent(event({ kind: 'group_created', name: 'Launch' }), 99))).toBe('张伟 created the group “Launch”');
  });

  it('counts the rest of a long list, and isolates every name', () => {
    setLocale('en');
    const many = Array.from({ length: 2000 }, (_, i) => ({ id: 100 + i, name: `p${i}` }));
    const text = describeEvent(event({ kind: 'group_created', name: 'All staff', users: many }), 99);
    expect(strip(text)).toMatch(/with p0, p1, .*, p9 and 1990 others$/);
    const evil = describeEvent(event({ kind: 'renamed', actor: { id: 5, name: 'x\u202Eyz' } }), 99);
    expect(evil.startsWith('\u2068x\u202Eyz\u2069')).toBe(true);
  });
});
