//! Resource and provider schemas, with the plan behaviour of each attribute next to it
//! (like terraform-plugin-framework's plan modifiers, declared instead of coded).

use crate::framework::value::{Type, Value};

#[derive(Clone, Debug)]
pub struct Schema {
    pub version: i64,
    pub block: Block,
}

#[derive(Clone, Debug, Default)]
pub struct Block {
    pub description: String,
    pub attributes: Vec<Attribute>,
    pub blocks: Vec<NestedBlock>,
    pub deprecated: bool,
}

/// How a nested block or nested attribute holds its objects. Terraform also knows set and map
/// nesting; the planner (`plan::plan_block`) handles single and list only, so those are not
/// offered (a block the planner passed through unplanned would lose its defaults, computed
/// values and replacements without a word).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nesting {
    Single,
    List,
}

/// Attributes of a nested attribute (`pve = { endpoint = … }`).
#[derive(Clone, Debug)]
pub struct NestedAttributes {
    pub nesting: Nesting,
    pub attributes: Vec<Attribute>,
}

#[derive(Clone, Debug)]
pub struct Attribute {
    pub name: String,
    pub ty: Type,
    pub nested: Option<NestedAttributes>,
    pub description: String,
    pub required: bool,
    pub optional: bool,
    pub computed: bool,
    pub sensitive: bool,
    /// Never stored in state or plan (Terraform ≥ 1.11); the resource sees it in config only.
    pub write_only: bool,
    pub deprecated: bool,
    /// A change of this attribute replaces the resource.
    pub requires_replace: bool,
    /// Value planned when the configuration leaves the attribute out. A computed attribute
    /// without one keeps its prior value through updates.
    pub default: Option<Value>,
}

impl Attribute {
    fn new(name: &str, ty: Type) -> Self {
        Attribute {
            name: name.into(),
            ty,
            nested: None,
            description: String::new(),
            required: false,
            optional: false,
            computed: false,
            sensitive: false,
            write_only: false,
            deprecated: false,
            requires_replace: false,
            default: None,
        }
    }
    pub fn required(name: &str, ty: Type) -> Self {
        Attribute { required: true, ..Self::new(name, ty) }
    }
    pub fn optional(name: &str, ty: Type) -> Self {
        Attribute { optional: true, ..Self::new(name, ty) }
    }
    pub fn computed(name: &str, ty: Type) -> Self {
        Attribute { computed: true, ..Self::new(name, ty) }
    }
    /// Optional; when left out, the provider (or the remote system) decides the value.
    pub fn optional_computed(name: &str, ty: Type) -> Self {
        Attribute { optional: true, computed: true, ..Self::new(name, ty) }
    }
    /// A nested attribute: `name = { … }` (Single) or `name = [{ … }]` (List).
    pub fn nested(name: &str, nesting: Nesting, attributes: Vec<Attribute>) -> Self {
        let obj = Type::Object(attributes.iter().map(|a| (a.name.clone(), a.ty.clone())).collect());
        let ty = match nesting {
            Nesting::Single => obj,
            Nesting::List => Type::list(obj),
        };
        Attribute { optional: true, nested: Some(NestedAttributes { nesting, attributes }), ..Self::new(name, ty) }
    }
    pub fn describe(mut self, d: &str) -> Self {
        self.description = d.into();
        self
    }
    pub fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }
    pub fn write_only(mut self) -> Self {
        self.write_only = true;
        self.sensitive = true;
        self
    }
    pub fn replace(mut self) -> Self {
        self.requires_replace = true;
        self
    }
    pub fn make_required(mut self) -> Self {
        self.required = true;
        self.optional = false;
        self
    }
    /// A default makes the attribute optional + computed: Terraform requires that of any
    /// attribute whose planned value can differ from a null config.
    pub fn default(mut self, v: Value) -> Self {
        self.default = Some(v);
        self.optional = true;
        self.computed = true;
        self.required = false;
        self
    }
}

#[derive(Clone, Debug)]
pub struct NestedBlock {
    pub name: String,
    pub nesting: Nesting,
    pub block: Block,
    pub min_items: i64,
    pub max_items: i64,
    pub requires_replace: bool,
}

impl NestedBlock {
    pub fn single(name: &str, block: Block) -> Self {
        NestedBlock {
            name: name.into(),
            nesting: Nesting::Single,
            block,
            min_items: 0,
            max_items: 0,
            requires_replace: false,
        }
    }
    pub fn list(name: &str, block: Block) -> Self {
        NestedBlock { nesting: Nesting::List, ..Self::single(name, block) }
    }
    pub fn replace(mut self) -> Self {
        self.requires_replace = true;
        self
    }
    pub fn items(mut self, min: i64, max: i64) -> Self {
        self.min_items = min;
        self.max_items = max;
        self
    }

    /// The standard `timeouts { create = "20m" … }` block, durations in Go syntax.
    pub fn timeouts(ops: &[&str]) -> Self {
        let attributes = ops
            .iter()
            .map(|op| {
                Attribute::optional(op, Type::String)
                    .describe(&format!("How long to wait for {op}, e.g. \"30s\", \"10m\", \"1h\"."))
            })
            .collect();
        NestedBlock::single(
            "timeouts",
            Block { description: "Time limits per operation.".into(), attributes, ..Block::default() },
        )
    }

    pub fn value_type(&self) -> Type {
        let obj = self.block.value_type();
        match self.nesting {
            Nesting::Single => obj,
            Nesting::List => Type::list(obj),
        }
    }
}

impl Block {
    pub fn new(description: &str) -> Self {
        Block { description: description.into(), ..Block::default() }
    }
    pub fn attr(mut self, a: Attribute) -> Self {
        self.attributes.push(a);
        self
    }
    pub fn block(mut self, b: NestedBlock) -> Self {
        self.blocks.push(b);
        self
    }

    /// The object type of a value of this block.
    pub fn value_type(&self) -> Type {
        let mut attrs: std::collections::BTreeMap<String, Type> =
            self.attributes.iter().map(|a| (a.name.clone(), a.ty.clone())).collect();
        for b in &self.blocks {
            attrs.insert(b.name.clone(), b.value_type());
        }
        Type::Object(attrs)
    }

    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }
    pub fn nested_block(&self, name: &str) -> Option<&NestedBlock> {
        self.blocks.iter().find(|b| b.name == name)
    }
}

impl Schema {
    pub fn new(version: i64, block: Block) -> Self {
        Schema { version, block }
    }
    pub fn value_type(&self) -> Type {
        self.block.value_type()
    }
}

/// Identity attributes of a resource (Terraform ≥ 1.12 `import { identity = {…} }`).
#[derive(Clone, Debug)]
pub struct IdentitySchema {
    pub version: i64,
    pub attributes: Vec<IdentityAttribute>,
}

#[derive(Clone, Debug)]
pub struct IdentityAttribute {
    pub name: String,
    pub description: String,
    pub required_for_import: bool,
}

impl IdentitySchema {
    pub fn value_type(&self) -> Type {
        Type::Object(self.attributes.iter().map(|a| (a.name.clone(), Type::String)).collect())
    }
}
